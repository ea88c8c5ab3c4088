"""experiments/visualize.py, knn.py and transfer.py on small runs."""

import os

import matplotlib.image
import pytest

from cnnjax import inspect as ci
from cnnjax.train import load_run
from testlib import config_file_smoke_variant, load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script(name):
  return load_file(os.path.join(ROOT, "experiments", f"{name}.py"), f"experiments_{name}")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  from cnnjax.train import train_and_evaluate  # noqa: PLC0415
  config = config_file_smoke_variant("digits_cnn.py")
  with config.unlocked():
    config.num_train_steps = 6
    config.plots = False
  workdir = str(tmp_path_factory.mktemp("digits_run"))
  train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_visualize_and_knn_on_a_trained_run(run_dir, tmp_path, capsys, monkeypatch):
  import matplotlib.figure
  run = load_run(run_dir)
  assert run.step == 6 and run.model.num_classes == 10
  assert set(run.variables) == {"params", "batch_stats"}

  titles = []
  suptitle = matplotlib.figure.Figure.suptitle
  monkeypatch.setattr(matplotlib.figure.Figure, "suptitle",
                      lambda fig, text, **k: (titles.append(text), suptitle(fig, text, **k))[1])
  out = str(tmp_path / "pictures")
  assert _script("visualize").main(["--workdir", run_dir, "--out", out]) == 0
  run_titles = [t for t in titles if "filters" in t or "activations" in t or "image" in t]
  assert len(run_titles) >= 4
  for title in (" ".join(t.split()) for t in run_titles):  # Whose pictures, of which split.
    assert title.startswith(f"digits_cnn on digits ({run.workdir})"), title
  assert any("test split image 0" in " ".join(t.split()) for t in run_titles)
  names = set(os.listdir(out))
  assert {"filters_conv1_conv.png", "kernels_conv2_conv_0.png", "input.png",
          "activations_conv1.png", "activations_conv3.png", "hand_crafted.png",
          "cross.png"} <= names
  for name in names:
    assert matplotlib.image.imread(os.path.join(out, name)).shape[0] > 50, name

  knn = _script("knn")
  assert knn.main(["--workdir", run_dir]) == 0
  table = capsys.readouterr().out
  assert "| raw pixels, 5-NN | 64 |" in table and "`pre_logits` embeddings" in table
  rows = knn.compare(run_dir)
  assert [r["dim"] for r in rows] == [64, 128, 128]
  assert rows[0]["accuracy"] > 0.9  # Raw-pixel 5-NN on digits, as known (about 0.98).
  assert all(0 <= r["accuracy"] <= 1 for r in rows)
  assert open(os.path.join(run_dir, "knn.md")).read().startswith("k-NN (k=5)")


def test_scripts_report_a_missing_run(tmp_path, capsys):
  assert _script("knn").main(["--workdir", str(tmp_path)]) == 2
  assert "no config.json" in capsys.readouterr().err


@pytest.mark.slow
def test_transfer_quick(tmp_path):
  transfer = _script("transfer")
  summary = transfer.run(str(tmp_path), quick=True, steps=20, pretrain_steps=30)
  assert summary["target_steps"] == 20
  assert set(summary["accuracy"]) == {"head only", "fine-tuned", "from scratch"}
  for values in summary["accuracy"].values():
    assert len(values) == 1 and 0.2 < values[0] <= 1  # Above chance (5 classes).
  table = (tmp_path / "results.md").read_text()
  assert table.count("\n| ") == 5 and "| head only |" in table  # Header, rule, 3 rows.
  assert (tmp_path / "results.json").exists()
