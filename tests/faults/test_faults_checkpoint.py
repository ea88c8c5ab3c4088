"""Damaged checkpoints, full disks, unwritable run directories and checkpoints of another model.

All in process, on 2 of the 8 test devices, from one 10-step run with
checkpoints at steps 4, 8 and 10 that each test copies before breaking it.
"""

import errno
import logging
import os
import shutil
import stat

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from faults_common import assert_trees_equal, complete_steps, restore_raw, tiny_config

from cnnjax.train import CheckpointError, CheckpointMismatchError, train_and_evaluate
from cnnjax.train.loop import restore_checkpoint


def _devices():
  return jax.local_devices()[:2]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """A finished 10-step run: checkpoints 4, 8, 10."""
  workdir = str(tmp_path_factory.mktemp("faults_ckpt") / "run")
  train_and_evaluate(tiny_config(), workdir, devices=_devices())
  assert complete_steps(workdir) == [4, 8, 10]
  return workdir


def _copy(run, tmp_path, name="copy"):
  target = str(tmp_path / name)
  shutil.copytree(run, target)
  return target


def _state_files(workdir, step):
  root = os.path.join(workdir, "checkpoints", str(step), "state")
  return [os.path.join(r, n) for r, _, names in os.walk(root) for n in names
          if n != "commit_success.txt"]


def _truncate(path, rng):
  del rng
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _garble(path, rng):
  data = bytearray(open(path, "rb").read())
  lo, hi = len(data) // 4, max(len(data) // 4 + 1, 3 * len(data) // 4)
  data[lo:hi] = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(bytes(data))  # same size, other bytes


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _garble], ids=["truncated", "garbled"])
def test_corrupted_latest_checkpoint_falls_back_and_never_crash_loops(
    finished_run, tmp_path, caplog, damage):
  run = _copy(finished_run, tmp_path)
  rng = np.random.default_rng(0)
  for path in _state_files(run, 10):
    damage(path, rng)
  _, step8 = restore_raw(run, 8)

  with caplog.at_level(logging.WARNING, logger="cnnjax.train.checkpoint"):
    first = train_and_evaluate(tiny_config(num_train_steps=12), run, devices=_devices())
  messages = [r.getMessage() for r in caplog.records]
  assert first["resumed_from_step"] == 8
  assert any("checkpoint step 10" in m and "could not be restored" in m
             and "trying an older checkpoint" in m for m in messages), messages
  assert any("moved unreadable checkpoint step 10" in m for m in messages), messages
  moved = os.listdir(os.path.join(run, "checkpoints-unreadable"))
  assert len(moved) == 1 and moved[0].startswith("10-")
  # Training went on from step 8; the damaged step is out of the way.
  assert complete_steps(run) == [4, 8, 12]

  # Resuming again is an ordinary resume: no warning, no second fallback.
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="cnnjax.train.checkpoint"):
    second = train_and_evaluate(tiny_config(num_train_steps=14), run, devices=_devices())
  assert second["resumed_from_step"] == 12
  assert not [r for r in caplog.records if "could not be restored" in r.getMessage()]
  # The fallback read step 8 as it was written.
  assert_trees_equal(restore_raw(run, 8)[1]["params"], step8["params"])


def _writes_blocked(directory):
  """Whether the OS refuses a new file in ``directory`` (root ignores the mode bits)."""
  probe = os.path.join(directory, ".probe")
  try:
    with open(probe, "w"):
      pass
  except OSError:
    return True
  os.remove(probe)
  return False


def _fail_checkpoint_writes(monkeypatch, code):
  """Makes orbax's write of the data-position file of every checkpoint fail with ``OSError(code)``.

  The failure happens inside an asynchronous save, in orbax's writer thread,
  as a full disk or a refused write would.
  """
  async def refuse(self, x, directory):
    raise OSError(code, os.strerror(code), os.fspath(directory))
  monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", refuse)


@pytest.mark.slow
def test_disk_full_during_training_stops_clearly_and_keeps_earlier_checkpoints(
    finished_run, tmp_path, monkeypatch):
  run = _copy(finished_run, tmp_path)
  before = {s: restore_raw(run, s)[1] for s in (4, 8, 10)}
  _fail_checkpoint_writes(monkeypatch, errno.ENOSPC)
  with pytest.raises(CheckpointError) as e:
    train_and_evaluate(tiny_config(num_train_steps=14), run, devices=_devices())
  message = str(e.value)
  assert "could not write checkpoint step 12" in message
  assert "the disk is full (ENOSPC)" in message
  assert "earlier checkpoints [4, 8, 10] are intact" in message and "rerun" in message
  monkeypatch.undo()
  assert complete_steps(run) == [4, 8, 10]
  for step, state in before.items():
    assert_trees_equal(restore_raw(run, step)[1], state)
  # Once there is space again, the same command resumes from step 10.
  summary = train_and_evaluate(tiny_config(num_train_steps=14), run, devices=_devices())
  assert summary["resumed_from_step"] == 10


@pytest.mark.slow
def test_read_only_run_directory_stops_clearly_and_keeps_checkpoints(
    finished_run, tmp_path, monkeypatch):
  run = _copy(finished_run, tmp_path)
  before = restore_raw(run, 10)[1]
  modes = {}
  for root, dirs, _ in os.walk(run):
    for d in [root, *(os.path.join(root, x) for x in dirs)]:
      modes[d] = stat.S_IMODE(os.stat(d).st_mode)
  try:
    for d in modes:
      os.chmod(d, 0o555)
    if _writes_blocked(run):
      # An ordinary user: the run directory is checked before anything compiles.
      with pytest.raises(ValueError, match=r"work directory .* is not writable"):
        train_and_evaluate(tiny_config(num_train_steps=14), run, devices=_devices())
    else:
      # Root (as in CI containers) writes through mode 0o555, so the refusal a
      # read-only directory gives an ordinary user is injected where orbax
      # creates the checkpoint directory.
      _fail_checkpoint_writes(monkeypatch, errno.EACCES)
      with pytest.raises(CheckpointError,
                         match=r"step 12 .*not writable \(Permission denied\).*\[4, 8, 10\] are intact"):
        train_and_evaluate(tiny_config(num_train_steps=14), run, devices=_devices())
  finally:
    for d, mode in modes.items():
      os.chmod(d, mode)
  assert complete_steps(run) == [4, 8, 10]
  assert_trees_equal(restore_raw(run, 10)[1], before)


def _three_class_folder(root):
  """An image folder of 8x8 grey images like digits', but 3 classes (16 images each)."""
  from PIL import Image

  rng = np.random.default_rng(0)
  for name in ("a", "b", "c"):
    os.makedirs(root / name)
    for i in range(16):
      Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(
          root / name / f"{i}.png")
  return f"folder:{root}"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["other_width", "other_num_classes", "other_architecture"])
def test_checkpoint_of_another_model_is_a_clear_error(finished_run, tmp_path, case):
  run = _copy(finished_run, tmp_path)
  with open(os.path.join(run, "config.json")) as f:
    recorded = f.read()
  overrides, needle = {
      # Both shapes, named by parameter path.
      "other_width": ({"model.kwargs": {"width": 6}},
                      "params/conv1/conv/kernel has shape (3, 3, 1, 4) in the checkpoint "
                      "but (3, 3, 1, 6) in the model"),
      "other_num_classes": ({"data.name": _three_class_folder(tmp_path / "three"),
                             "data.eval_split": "validation"},
                            "params/head/kernel has shape (16, 10) in the checkpoint "
                            "but (16, 3) in the model"),
      "other_architecture": ({"model.name": "lenet5", "model.kwargs": {"padding": "SAME"}},
                             "array(s) the checkpoint lacks"),
  }[case]
  config = tiny_config(num_train_steps=14, **overrides)
  with pytest.raises(CheckpointMismatchError) as e:
    train_and_evaluate(config, run, devices=_devices())
  message = str(e.value)
  assert "checkpoint step 10" in message and "does not fit the model" in message
  assert needle in message, message
  assert "model.name='digits_cnn'" in message and "--fresh" in message
  # Nothing was moved aside or rewritten: the run is intact for the right config.
  assert complete_steps(run) == [4, 8, 10]
  assert not os.path.exists(os.path.join(run, "checkpoints-unreadable"))
  with open(os.path.join(run, "config.json")) as f:
    assert f.read() == recorded
  with pytest.raises(CheckpointMismatchError, match=r"params/conv2/conv/kernel has shape"):
    restore_checkpoint(tiny_config(**{"model.kwargs": {"width": 6}}), run)
