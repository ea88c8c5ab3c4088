"""The engine takes objects: a model outside the registry, a data set object; finished runs stay as they are."""

import os

import flax.linen as nn
import jax
import pytest

from cnnjax import models
from cnnjax.train import train_and_evaluate
from cnnjax.train.runs import load_run
from testlib import ArrayData, digest, tiny_config


class OutsideNet(nn.Module):
  """A model no registry knows: conv -> BatchNorm over ``axis_name`` -> pool -> dense."""
  num_classes: int = 3
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(nn.Conv(4, (3, 3))(x))
    x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name, momentum=0.5)(x)
    return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))


def _config():
  # The module and the data set are passed as objects: their names are labels.
  return tiny_config(**{
      "model.name": "outside_net", "model.kwargs": {}, "data.name": "arrays",
      "data.train_subset": None, "batch_size": 16, "eval_batch_size": 32,
      "num_train_steps": 6, "checkpoint_every_steps": 0, "eval_every_epochs": 1,
      "async_checkpointing": False})


@pytest.fixture(scope="module")
def outside_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("outside") / "run")
  summary = train_and_evaluate(_config(), workdir, model=OutsideNet(), data=ArrayData(),
                               devices=jax.local_devices()[:2])
  return workdir, summary


def test_a_model_outside_the_registry_trains_on_a_data_set_object(outside_run):
  workdir, summary = outside_run
  assert "outside_net" not in models.names()
  assert summary["steps"] == 6 and summary["test_count"] == 96
  assert summary["checkpoints"][-1] == 6
  # The classes are separable by their mean: six steps learn more than chance.
  assert summary["test_accuracy"] > 0.5
  run = load_run(workdir, model=OutsideNet(), data=ArrayData())
  assert run.step == 6 and set(run.variables) == {"params", "batch_stats"}


def test_rerunning_a_finished_run_changes_nothing_on_disk(outside_run, capsys):
  workdir, summary = outside_run
  before = digest(workdir)
  assert {"summary.json", "metrics.jsonl", "config.json"} <= set(before)
  assert any(p.startswith("checkpoints") for p in before)
  capsys.readouterr()
  again = train_and_evaluate(_config(), workdir, model=OutsideNet(), data=ArrayData(),
                             devices=jax.local_devices()[:2])
  out = capsys.readouterr().out
  assert (f"run already finished at step 6 — summary.json: test accuracy "
          f"{summary['test_accuracy']:.4f}; use --fresh to start over") in out
  assert again == summary
  assert digest(workdir) == before  # byte for byte: summary, metrics, checkpoints, config


def test_fresh_moves_the_finished_run_aside(outside_run, tmp_path):
  import shutil
  from cnnjax.train import runs
  workdir, _ = outside_run
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  before = digest(copy)
  assert runs.finished_summary(copy, total_steps=6) is not None
  assert runs.finished_summary(copy, total_steps=7) is None  # asked to train longer: resumes
  assert runs.prepare_workdir(copy, fresh=True) == copy
  assert os.listdir(copy) == []  # train_and_evaluate(fresh=True) starts from step 0 here
  aside = [d for d in os.listdir(tmp_path) if d.startswith("run.old-")]
  assert len(aside) == 1 and digest(str(tmp_path / aside[0])) == before


def test_a_model_that_is_not_a_module_is_a_type_error(tmp_path):
  with pytest.raises(TypeError, match="flax.linen.Module instance"):
    train_and_evaluate(_config(), str(tmp_path), model=OutsideNet, data=ArrayData())


def _imported_modules(package_dir):
  """Every module named by an import statement in the package's files (lazy ones too)."""
  import ast  # noqa: PLC0415
  found = {}
  for name in sorted(os.listdir(package_dir)):
    if name.endswith(".py"):
      with open(os.path.join(package_dir, name)) as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          found.update({alias.name: name for alias in node.names})
        elif isinstance(node, ast.ImportFrom) and node.module:
          found[node.module] = name
          found.update({f"{node.module}.{alias.name}": name for alias in node.names})
  return found


def test_inspect_and_train_do_not_import_each_other():
  import cnnjax  # noqa: PLC0415
  root = os.path.dirname(cnnjax.__file__)
  inspect_imports = _imported_modules(os.path.join(root, "inspect"))
  assert not {m: f for m, f in inspect_imports.items()
              if m == "cnnjax.train" or m.startswith("cnnjax.train.")}
  train_imports = _imported_modules(os.path.join(root, "train"))
  assert not {m: f for m, f in train_imports.items()
              if m == "cnnjax.inspect" or m.startswith("cnnjax.inspect.")}
  assert "cnnjax.data.loader" in train_imports  # the scan sees package imports


def test_a_finished_run_of_another_model_is_a_mismatch_not_finished(outside_run):
  from cnnjax.train import CheckpointMismatchError  # noqa: PLC0415
  workdir, _ = outside_run
  before = digest(workdir)

  class WiderNet(OutsideNet):
    @nn.compact
    def __call__(self, x, train: bool):
      x = nn.relu(nn.Conv(6, (3, 3))(x))
      return nn.Dense(self.num_classes, name="head")(x.mean(axis=(1, 2)))

  with pytest.raises(CheckpointMismatchError, match="does not fit the model"):
    train_and_evaluate(_config(), workdir, model=WiderNet(), data=ArrayData(),
                       devices=jax.local_devices()[:2])
  assert digest(workdir) == before


def test_a_run_resolves_its_data_set_once(monkeypatch):
  from cnnjax.data import sources
  from cnnjax.train import setup
  calls = []
  resolve = sources._builder
  monkeypatch.setattr(sources, "_builder", lambda *a, **k: calls.append(a) or resolve(*a, **k))
  experiment = setup.build(tiny_config(), devices=jax.local_devices()[:1])
  experiment.test_loader()
  # One TFDS builder for the info, the statistics and all three loaders.
  assert len(calls) == 1
  assert experiment.train_loader.dataset is experiment.eval_loader.dataset
