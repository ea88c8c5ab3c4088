"""k-NN on a trained network's embeddings versus on raw pixels: how much the network's features help.

Restores a run of ``experiments/train.py``, extracts the ``pre_logits``
features (the input of the classifier head) of the train and test splits
with ``cnnjax.inspect.extract_features``, fits scikit-learn's
``KNeighborsClassifier(n_neighbors=5)`` on the train embeddings, and reports
its test accuracy next to the same classifier on raw (normalised) pixels and
the network's own head. Prints a markdown table and writes it to
``<workdir>/knn.md``.

Commands::

  python experiments/train.py --config experiments/configs/digits_cnn.py --workdir runs/digits
  python experiments/knn.py --workdir runs/digits [--k 5] [--layer pre_logits]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from cnnjax import inspect as ci
from cnnjax.train import load_run


def knn_accuracy(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, k: int = 5) -> float:
  """Test accuracy of ``KNeighborsClassifier(n_neighbors=k)`` fitted on ``(train_x, train_y)``."""
  from sklearn.neighbors import KNeighborsClassifier  # noqa: PLC0415
  classifier = KNeighborsClassifier(n_neighbors=k).fit(train_x, train_y)
  return float(np.mean(classifier.predict(test_x) == test_y))


def compare(workdir: str, *, k: int = 5, layer: str = "pre_logits") -> list[dict]:
  """Rows ``{'features', 'dim', 'accuracy'}`` for raw pixels, the embeddings and the head."""
  run = load_run(workdir)
  data = run.config.data
  train_x, train_y = ci.split_arrays(data.name, data.train_split, data_dir=data.data_dir)
  test_x, test_y = ci.split_arrays(data.name, data.test_split, data_dir=data.data_dir)
  rows = []
  raw_train = train_x.reshape(len(train_x), -1)
  raw_test = test_x.reshape(len(test_x), -1)
  rows.append({"features": f"raw pixels, {k}-NN", "dim": raw_train.shape[1],
               "accuracy": knn_accuracy(raw_train, train_y, raw_test, test_y, k)})
  emb_train = ci.extract_features(run.model, run.variables, train_x, layer=layer)
  emb_test = ci.extract_features(run.model, run.variables, test_x, layer=layer)
  rows.append({"features": f"`{layer}` embeddings of {run.config.model.name} (step {run.step}), "
                           f"{k}-NN", "dim": emb_train.shape[1],
               "accuracy": knn_accuracy(emb_train, train_y, emb_test, test_y, k)})
  rows.append({"features": f"the network's own head ({run.config.model.name})",
               "dim": emb_train.shape[1],
               "accuracy": ci.accuracy(run.model, run.variables, test_x, test_y)})
  return rows


def markdown(rows: list[dict], title: str) -> str:
  lines = [title, "", "| features | dimension | test accuracy |", "| --- | ---: | ---: |"]
  lines += [f"| {r['features']} | {r['dim']} | {r['accuracy']:.4f} |" for r in rows]
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="run directory of experiments/train.py")
  parser.add_argument("--k", type=int, default=5, help="neighbours")
  parser.add_argument("--layer", default="pre_logits", help="layer whose output is the embedding")
  args = parser.parse_args(argv)
  try:
    rows = compare(args.workdir, k=args.k, layer=args.layer)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  table = markdown(rows, f"k-NN (k={args.k}) on the test split, run `{args.workdir}`")
  print(table)
  with open(os.path.join(args.workdir, "knn.md"), "w") as f:
    f.write(table)
  return 0


if __name__ == "__main__":
  sys.exit(main())
