"""Transfer learning on digits: pretrain on 0-4, transfer to 5-9 with few labels.

1. Pretrain ``digits_cnn`` (5 classes) on the train images of digits 0-4.
2. Target task: digits 5-9 (labels 0-4), with only ``--per_class`` train
   images per class; tested on every test image of 5-9.
3. With the same budget of ``--steps`` updates on the target task:

   * **head only**: the pretrained backbone frozen (``optax.set_to_zero``
     through ``transfer_optimizer``; BatchNorm statistics frozen with
     ``train=False``), a new head trained;
   * **fine-tuned**: head only for half of the steps, then everything, the
     backbone at ``--backbone_lr_factor`` times the head's learning rate;
   * **from scratch**: the same network from a random initialisation, all
     parameters trained.

Each is repeated for ``--seeds`` draws of the few target images (and
initialisations); the table gives the mean and the spread. Writes
``results.md`` and ``results.json`` to ``--workdir``.

Commands::

  python experiments/transfer.py --workdir runs/transfer           # about 2 minutes on 2 CPU cores
  python experiments/transfer.py --workdir runs/transfer_q --quick # about 30 s (for tests)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import inspect as ci
from cnnjax import models
from cnnjax.train import create_optimizer, fit

SOURCE, TARGET = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)


def sgd(learning_rate: float, steps: int, weight_decay: float = 5e-4):
  """SGD with Nesterov momentum and a cosine schedule over ``steps`` (the digits recipe)."""
  return create_optimizer(
      {"name": "sgd", "learning_rate": learning_rate, "momentum": 0.9, "nesterov": True,
       "weight_decay": weight_decay},
      {"name": "cosine", "warmup_epochs": 0.0}, steps_per_epoch=1, num_epochs=steps)


def select(images, labels, classes, per_class: int | None = None, seed: int = 0):
  """The examples of ``classes`` relabelled ``0..len(classes)-1``; ``per_class`` of each if set."""
  rng = np.random.default_rng(seed)
  keep = []
  for c in classes:
    where = np.flatnonzero(labels == c)
    keep.append(where if per_class is None else rng.choice(where, per_class, replace=False))
  keep = np.sort(np.concatenate(keep))
  relabel = np.full(labels.max() + 1, -1)
  relabel[list(classes)] = np.arange(len(classes))
  return images[keep], relabel[labels[keep]].astype(np.int32)


def init(model, seed: int, example):
  return jax.device_get(model.init(jax.random.key(seed), jnp.asarray(example[:1]), train=False))


def run(workdir: str, *, quick: bool = False, steps: int | None = None, per_class: int = 10,
        seeds: int | None = None, pretrain_steps: int | None = None, lr: float = 0.05,
        backbone_lr_factor: float = 0.1, width: int | None = None,
        pretrained_path: str | None = None) -> dict:
  """Runs the experiment; returns the results written to ``results.json``.

  ``pretrained_path`` (a ``digits_cnn`` run directory, checkpoint,
  ``.safetensors`` or ``.pth`` of the same ``width``, read by
  ``models.pretrained``) replaces step 1.
  """
  start = time.time()
  steps = steps or (40 if quick else 200)
  seeds = seeds or (1 if quick else 3)
  pretrain_steps = pretrain_steps or (60 if quick else 400)
  width = width or (8 if quick else 32)
  train_x, train_y = ci.split_arrays("digits", "train")
  test_x, test_y = ci.split_arrays("digits", "test")
  src_x, src_y = select(train_x, train_y, SOURCE)
  src_test_x, src_test_y = select(test_x, test_y, SOURCE)
  tgt_test_x, tgt_test_y = select(test_x, test_y, TARGET)
  model = models.create("digits_cnn", num_classes=len(TARGET), width=width)
  batch = min(32, per_class * len(TARGET))

  if pretrained_path:
    _, pretrained = models.pretrained("digits_cnn", pretrained_path, num_classes=len(SOURCE),
                                      width=width)
    pretrain_steps = 0
  else:
    pretrained, _ = fit(model, init(model, 0, src_x), sgd(0.1, pretrain_steps), src_x, src_y,
                        steps=pretrain_steps, batch_size=64, seed=0)
  source_accuracy = ci.accuracy(model, pretrained, src_test_x, src_test_y)
  print(f"pretrained on digits 0-4: test accuracy {source_accuracy:.4f} "
        f"({pretrain_steps} steps, {time.time() - start:.0f} s)")

  results: dict[str, list[float]] = {"head only": [], "fine-tuned": [], "from scratch": []}
  for seed in range(seeds):
    x, y = select(train_x, train_y, TARGET, per_class=per_class, seed=seed)
    fresh = init(model, 100 + seed, x)
    transferred = ci.load_backbone(fresh, pretrained)

    head_only, _ = fit(model, transferred, ci.transfer_optimizer(sgd(lr, steps)), x, y,
                          steps=steps, batch_size=batch, seed=seed, freeze_statistics=True)
    results["head only"].append(ci.accuracy(model, head_only, tgt_test_x, tgt_test_y))

    half = steps // 2
    warm, _ = fit(model, transferred, ci.transfer_optimizer(sgd(lr, half)), x, y,
                     steps=half, batch_size=batch, seed=seed, freeze_statistics=True)
    tx = ci.transfer_optimizer(sgd(lr, steps - half), sgd(lr * backbone_lr_factor, steps - half))
    tuned, _ = fit(model, warm, tx, x, y, steps=steps - half, batch_size=batch,
                      seed=seed + 1000)
    results["fine-tuned"].append(ci.accuracy(model, tuned, tgt_test_x, tgt_test_y))

    scratch, _ = fit(model, fresh, sgd(0.1, steps), x, y, steps=steps, batch_size=batch,
                        seed=seed)
    results["from scratch"].append(ci.accuracy(model, scratch, tgt_test_x, tgt_test_y))
    print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in results.items()))

  summary = {
      "source_test_accuracy": source_accuracy,
      "pretrain_steps": pretrain_steps,
      "target_steps": steps,
      "per_class": per_class,
      "target_train_images": per_class * len(TARGET),
      "target_test_images": int(len(tgt_test_y)),
      "seeds": seeds,
      "batch_size": batch,
      "learning_rate": lr,
      "backbone_lr_factor": backbone_lr_factor,
      "width": width,
      "accuracy": results,
      "wall_time_s": time.time() - start,
  }
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=2)
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write(markdown(summary))
  return summary


def markdown(summary: dict) -> str:
  n = summary["per_class"]
  lines = [
      f"Transfer from digits 0-4 (pretrained {summary['pretrain_steps']} steps, test accuracy "
      f"{summary['source_test_accuracy']:.4f}) to digits 5-9 with {n} train images per class "
      f"({summary['target_train_images']} in all); {summary['target_steps']} steps of batch "
      f"{summary['batch_size']} on the target for each method; test accuracy on the "
      f"{summary['target_test_images']} test images of 5-9, mean over {summary['seeds']} "
      f"seed(s) (min-max).",
      "",
      "| method | trained on the target | test accuracy |",
      "| --- | --- | ---: |",
  ]
  what = {"head only": "head (backbone and BatchNorm statistics frozen)",
          "fine-tuned": f"head, then all (backbone lr x{summary['backbone_lr_factor']})",
          "from scratch": "all, random initialisation"}
  for name, values in summary["accuracy"].items():
    values = np.asarray(values)
    spread = f" ({values.min():.4f}-{values.max():.4f})" if len(values) > 1 else ""
    lines.append(f"| {name} | {what[name]} | {values.mean():.4f}{spread} |")
  return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="where results.md and results.json go")
  parser.add_argument("--quick", action="store_true", help="a short run (about 30 s) for tests")
  parser.add_argument("--steps", type=int, default=None, help="updates on the target task (200)")
  parser.add_argument("--per_class", type=int, default=10, help="target train images per class")
  parser.add_argument("--seeds", type=int, default=None, help="repetitions (3)")
  parser.add_argument("--pretrain_steps", type=int, default=None, help="updates on 0-4 (400)")
  parser.add_argument("--lr", type=float, default=0.05, help="head learning rate")
  parser.add_argument("--backbone_lr_factor", type=float, default=0.1,
                      help="backbone learning rate / head learning rate when fine-tuning")
  parser.add_argument("--pretrained", default=None, metavar="PATH",
                      help="start from these digits_cnn weights (run directory, checkpoint, "
                           ".safetensors or .pth) instead of pretraining on 0-4")
  args = parser.parse_args(argv)
  summary = run(args.workdir, quick=args.quick, steps=args.steps, per_class=args.per_class,
                seeds=args.seeds, pretrain_steps=args.pretrain_steps, lr=args.lr,
                backbone_lr_factor=args.backbone_lr_factor, pretrained_path=args.pretrained)
  print(markdown(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
