"""train_and_evaluate end to end on the embedded digits data, in process."""

import errno
import functools
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from cnnjax import data as data_lib
from cnnjax.train import Checkpointer, CheckpointError, NonFiniteLossError
from cnnjax.train import config as config_lib
from cnnjax.train.loop import restore_checkpoint, train_and_evaluate
from testlib import tiny_config


def _config(**overrides):
  # Evaluation every epoch: the run directory test expects eval events.
  return tiny_config(**{"eval_every_epochs": 1, **overrides})


@pytest.fixture(scope="module")
def run_on_four(tmp_path_factory):
  """A 10-step run on 4 devices: checkpoints at 4, 8 (every 4 steps), 10 (end)."""
  workdir = str(tmp_path_factory.mktemp("run4"))
  summary = train_and_evaluate(_config(plots=True), workdir, devices=jax.local_devices()[:4])
  return workdir, summary


@pytest.mark.slow
def test_run_directory_and_summary(run_on_four):
  workdir, summary = run_on_four
  for name in ("config.json", "metrics.jsonl", "summary.json", "plots/loss.png",
               "plots/accuracy.png"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert summary["steps"] == 10 and summary["steps_per_epoch"] == 8
  assert summary["test_count"] == 360  # every test example once, padding masked
  assert 0.0 <= summary["test_accuracy"] <= 1.0 and np.isfinite(summary["test_loss"])
  assert len(summary["devices"]) == 4
  assert summary["checkpoints"] == [4, 8, 10]  # max_to_keep=3
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["test_accuracy"] == summary["test_accuracy"]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["optimizer"]["learning_rate"] == 0.05
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    events = [json.loads(line) for line in f]
  train = [e for e in events if e["split"] == "train"]
  assert [e["step"] for e in train] == [2, 4, 6, 8, 10]
  assert all(e["count"] == 64 for e in train)  # 2 steps x 32 per log event
  assert {e["split"] for e in events} == {"train", "eval", "test"}


@pytest.mark.slow
def test_checkpoint_from_four_devices_restores_on_one_and_resumes_on_two(run_on_four, tmp_path):
  workdir, _ = run_on_four
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  step, state, data_state = restore_checkpoint(_config(), copy)
  assert step == 10 and int(state.step) == 10 and data_state["step"] == 10
  cpu = jax.local_devices()[0]
  for leaf in jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state)):
    assert leaf.sharding.device_set == {cpu}
  # The same numbers as the four-device run saved, bit for bit.
  import orbax.checkpoint as ocp
  with ocp.CheckpointManager(os.path.join(copy, "checkpoints"), item_names=("state", "data")) as m:
    raw = m.restore(10, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
  for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(raw["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The restored state evaluates on one device.
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          np.zeros((2, 8, 8, 1), np.float32), train=False)
  assert logits.shape == (2, 10)
  summary = train_and_evaluate(_config(num_train_steps=14), copy, devices=jax.local_devices()[:2])
  assert summary["resumed_from_step"] == 10 and summary["steps"] == 14
  assert len(summary["devices"]) == 2


@pytest.mark.slow
def test_pmap_checkpoint_resumes_under_jit_on_another_device_count(tmp_path):
  """Step 3 of a four-device pmap run, resumed under jit on two devices, ends where pmap ended.

  Without dropout: its masks are drawn per device under pmap and for the
  global batch under jit, so with dropout the two differ by design.
  """
  config = functools.partial(_config, **{"model.kwargs": {"width": 4, "dropout_rate": 0.0},
                                         "num_train_steps": 6, "checkpoint_every_steps": 3})
  workdir = str(tmp_path / "pmap")
  train_and_evaluate(config(), workdir, devices=jax.local_devices()[:4])
  copy = str(tmp_path / "jit")
  shutil.copytree(workdir, copy)
  shutil.rmtree(os.path.join(copy, "checkpoints", "6"))
  os.remove(os.path.join(copy, "summary.json"))
  summary = train_and_evaluate(config(strategy="jit"), copy, devices=jax.local_devices()[:2])
  assert summary["resumed_from_step"] == 3 and summary["strategy"] == "jit"
  got = restore_checkpoint(config(), copy)[1]
  want = restore_checkpoint(config(), workdir)[1]
  # Same batches, same updates; the BatchNorm moments and gradients are summed
  # in another order (jit's partitioned sums over 2 devices against pmap's
  # psum over 4: ~1e-7 relative per reduction), compounded over three SGD
  # steps with momentum: 1e-5 relative.
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path((got.params, got.batch_stats)),
                          jax.tree_util.tree_leaves((want.params, want.batch_stats)), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))
  assert int(got.step) == 6


@pytest.mark.slow
def test_corrupted_latest_checkpoint_falls_back_to_an_older_one(run_on_four, tmp_path, caplog):
  workdir, _ = run_on_four
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  state_dir = os.path.join(copy, "checkpoints", "10", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      if name not in ("commit_success.txt",):
        with open(os.path.join(root, name), "wb") as f:
          f.write(b"\x00garbage")
  with caplog.at_level(logging.WARNING, logger="cnnjax.train.checkpoint"):
    summary = train_and_evaluate(_config(), copy, devices=jax.local_devices()[:4])
  assert summary["resumed_from_step"] == 8
  assert any("checkpoint step 10" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_disk_full_is_reported_and_earlier_checkpoints_stay(run_on_four, tmp_path, monkeypatch):
  workdir, _ = run_on_four
  copy = str(tmp_path / "copy")
  shutil.copytree(workdir, copy)
  ckpt = Checkpointer(os.path.join(copy, "checkpoints"), async_save=False)

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ckpt._manager, "save", full)
  with pytest.raises(CheckpointError, match=r"step 12 .*disk is full.*\[4, 8, 10\] are intact"):
    ckpt.save(12, {"params": {"w": np.zeros(2)}}, {"step": 12})
  assert ckpt.all_steps() == [4, 8, 10]


@pytest.mark.slow
def test_nonfinite_loss_stops_with_step_and_checkpoint(tmp_path):
  # LeNet-5 has no normalisation to keep a diverging network finite.
  config = _config(**{"optimizer.learning_rate": 1e30, "num_train_steps": 6,
                      "checkpoint_every_steps": 0, "model.name": "lenet5",
                      "model.kwargs": {"padding": "SAME"}})
  with pytest.raises(NonFiniteLossError, match=r"NaN/Inf at step \d+; no checkpoint"):
    train_and_evaluate(config, str(tmp_path / "nan"), devices=jax.local_devices()[:2])


@pytest.mark.parametrize("overrides,match", [
    ({"model.name": "resnet1"}, "unknown model 'resnet1'"),
    ({"optimizer.name": "adagrad"}, r"optimizer.name='adagrad' is not one of"),
    ({"batch_size": 30}, r"batch_size=30 must be a positive multiple of the number of devices \(4"),
    ({"data.name": "nonexistent_set"}, "nonexistent_set"),
])
def test_configuration_errors_before_compiling(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    train_and_evaluate(_config(**overrides), str(tmp_path / "bad"), devices=jax.local_devices()[:4])
  assert not os.path.exists(tmp_path / "bad" / "checkpoints")


def test_unprepared_tfds_set_says_how_to_prepare(tmp_path):
  config = _config(**{"data.name": "mnist", "data.data_dir": str(tmp_path / "tfds")})
  with pytest.raises(data_lib.DatasetNotPreparedError, match="cnnjax.data.prepare"):
    train_and_evaluate(config, str(tmp_path / "run"), devices=jax.local_devices()[:4])


def test_unwritable_workdir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  with pytest.raises(ValueError, match="not writable"):
    train_and_evaluate(_config(), str(blocker / "run"), devices=jax.local_devices()[:4])


def test_unknown_config_key_names_the_nearest():
  c = _config()
  c.unlock()
  c.optimizer.learning_rte = 0.1
  with pytest.raises(ValueError, match="did you mean 'optimizer.learning_rate'"):
    config_lib.validate(c)
  with pytest.raises(ValueError, match="did you mean 'batch_size'"):
    config_lib.check_override_flags(["--config.bach_size=3"])
