"""config.task in the engine: regression and segmentation runs end to end, under pmap and jit."""

import json
import os

import jax
import numpy as np
import pytest

from cnnjax.train import tasks
from cnnjax.train.loop import restore_checkpoint, train_and_evaluate
from testlib import config_file_smoke_variant, tiny_config

STRATEGIES = ("pmap", "jit")


def _regression_config(strategy, **overrides):
  return tiny_config(**{
      "task": "regression", "target_std": 26.0, "data.name": "digits_rotation",
      "model.kwargs": {"width": 4, "num_outputs": 1}, "data.train_subset": 64,
      "num_train_steps": 3, "log_every_steps": 3, "checkpoint_every_steps": 0,
      "strategy": strategy, "plots": True, **overrides})


def _segmentation_config(strategy, **overrides):
  return tiny_config(**{
      "task": "segmentation", "data.name": "digit_scenes", "model.name": "unet",
      "model.kwargs": {"features": (4, 8)}, "augment": "random_crop(padding=4)",
      "cutmix_alpha": 1.0, "data.train_subset": 32, "batch_size": 16, "eval_batch_size": 40,
      "num_train_steps": 2, "log_every_steps": 2, "checkpoint_every_steps": 0,
      "strategy": strategy, "plots": True, **overrides})


def _events(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module", params=STRATEGIES)
def regression_run(request, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp(f"rot_{request.param}"))
  config = _regression_config(request.param)
  # Under jit the task comes as an object (a Huber loss), as a user passes their own.
  task = tasks.Regression(loss="huber", target_std=26.0) if request.param == "jit" else None
  return config, workdir, train_and_evaluate(config, workdir, devices=jax.local_devices()[:2],
                                             task=task)


@pytest.fixture(scope="module", params=STRATEGIES)
def segmentation_run(request, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp(f"seg_{request.param}"))
  if request.param == "pmap":
    # The segmentation config's own smoke variant (pmap, random crops of the class maps,
    # one epoch of 256 scenes): the run that checks the config file end to end.
    config = config_file_smoke_variant("digit_scenes_unet.py")
    assert config.strategy == "pmap" and config.task == "segmentation"
  else:  # Crops and cutmix of the class maps, under jit.
    config = _segmentation_config(request.param)
  return config, workdir, train_and_evaluate(config, workdir, devices=jax.local_devices()[:2])


@pytest.mark.slow
def test_regression_run_reports_mae_and_trains_a_one_output_head(regression_run):
  config, workdir, summary = regression_run
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  for key in ("test_loss", "test_mae", "test_rmse", "test_r2"):
    assert np.isfinite(on_disk[key]) and on_disk[key] == summary[key], key
  assert "test_accuracy" not in on_disk
  assert on_disk["task"] == "regression" and on_disk["primary_metric"] == "test_mae"
  assert on_disk["test_count"] == 360  # every test digit once, padding masked
  # RMSE >= MAE for any errors (the quadratic mean bounds the mean).
  assert on_disk["test_rmse"] >= on_disk["test_mae"] > 0
  # The model is a regression head: one output, not the ten digit classes.
  _, state, _ = restore_checkpoint(config, workdir)
  assert state.params["head"]["kernel"].shape[-1] == 1
  train = [e for e in _events(workdir) if e["split"] == "train"]
  assert train and "mae" in train[-1] and "accuracy" not in train[-1]
  assert sorted(os.listdir(os.path.join(workdir, "plots"))) == ["loss.png", "mae.png"]


@pytest.mark.slow
def test_segmentation_run_reports_mean_iou_and_pixel_accuracy(segmentation_run):
  _, workdir, summary = segmentation_run
  with open(os.path.join(workdir, "summary.json")) as f:
    on_disk = json.load(f)
  for key in ("test_loss", "test_pixel_accuracy", "test_mean_iou"):
    assert on_disk[key] == summary[key], key
  assert 0.0 <= on_disk["test_pixel_accuracy"] <= 1.0 and 0.0 <= on_disk["test_mean_iou"] <= 1.0
  assert on_disk["task"] == "segmentation" and on_disk["primary_metric"] == "test_mean_iou"
  assert on_disk["test_count"] == 250  # test scenes, each once
  assert "test_accuracy" not in on_disk
  events = _events(workdir)
  assert {"pixel_accuracy", "mean_iou"} <= set(next(e for e in events if e["split"] == "test"))
  assert sorted(os.listdir(os.path.join(workdir, "plots"))) == [
      "loss.png", "mean_iou.png", "pixel_accuracy.png"]


def test_a_task_the_data_set_cannot_serve_is_refused_before_compiling(tmp_path):
  # digits has no 'target' feature: regression there must fail, never train a classifier.
  config = _regression_config("pmap", **{"data.name": "digits"})
  with pytest.raises(ValueError, match="regression task needs a data set with a 'target'"):
    train_and_evaluate(config, str(tmp_path / "rot"))
  config = _segmentation_config("pmap", **{"data.name": "digits", "model.name": "digits_cnn",
                                           "model.kwargs": {"width": 4}, "augment": "",
                                           "cutmix_alpha": 0.0})
  with pytest.raises(ValueError, match="segmentation task needs a data set"):
    train_and_evaluate(config, str(tmp_path / "seg"))
  assert not (tmp_path / "rot").exists() and not (tmp_path / "seg").exists()


def test_num_outputs_that_disagrees_with_the_task_is_refused(tmp_path):
  config = _regression_config("pmap", **{"model.kwargs": {"width": 4, "num_outputs": 3}})
  with pytest.raises(ValueError, match="num_outputs=3 does not match"):
    train_and_evaluate(config, str(tmp_path / "run"))
