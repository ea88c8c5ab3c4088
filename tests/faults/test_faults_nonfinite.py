"""A NaN in the data: the run stops at that step naming the last good checkpoint, or skips it.

The poison is one batch of NaN images at training step 7 (the loader's
batch 6), injected into the in-memory loader; the model (DigitsCNN, with
BatchNorm) turns it into a NaN loss and NaN gradients. A diverging learning
rate is covered by ``tests/train/test_train_loop.py::test_nonfinite_loss_stops_with_step_and_checkpoint``.
"""

import jax
import numpy as np
import pytest
from faults_common import complete_steps, restore_raw, tiny_config, train_events

from cnnjax.data import loader as loader_lib
from cnnjax.train import NonFiniteLossError, train_and_evaluate

POISONED_STEP = 7


def _poison(monkeypatch):
  original = loader_lib.Loader._memory_batch

  def batch(self, step):
    out = original(self, step)
    if self.train and step == POISONED_STEP - 1:
      out = dict(out, image=np.full_like(out["image"], np.nan))
    return out

  monkeypatch.setattr(loader_lib.Loader, "_memory_batch", batch)


@pytest.mark.slow
def test_nan_batch_stops_at_its_step_naming_the_last_good_checkpoint(tmp_path, monkeypatch):
  run = str(tmp_path / "run")
  _poison(monkeypatch)
  with pytest.raises(NonFiniteLossError) as e:
    train_and_evaluate(tiny_config(), run, devices=jax.local_devices()[:2])
  message = str(e.value)
  assert f"NaN/Inf at step {POISONED_STEP};" in message
  assert f"the last good checkpoint is step 4 in {run}/checkpoints" in message
  assert "skip_nonfinite=True" in message
  assert complete_steps(run) == [4]  # nothing NaN was saved
  _, state = restore_raw(run, 4)
  assert all(np.isfinite(x).all() for x in jax.tree_util.tree_leaves(state["params"]))
  # Without the bad batch the same command resumes from the last good checkpoint.
  monkeypatch.undo()
  summary = train_and_evaluate(tiny_config(), run, devices=jax.local_devices()[:2])
  assert summary["resumed_from_step"] == 4 and np.isfinite(summary["test_loss"])


@pytest.mark.slow
def test_skip_nonfinite_skips_the_nan_batch_and_counts_it(tmp_path, monkeypatch):
  run = str(tmp_path / "run")
  _poison(monkeypatch)
  summary = train_and_evaluate(tiny_config(skip_nonfinite=True), run,
                               devices=jax.local_devices()[:2])
  assert np.isfinite(summary["test_loss"]) and summary["steps"] == 10
  events = train_events(run)
  # One event per 2 steps; the one covering step 7 counts one skipped update.
  skipped = {e["step"]: e["skipped"] for e in events}
  assert skipped == {2: 0.0, 4: 0.0, 6: 0.0, 8: 1.0, 10: 0.0}
  _, state = restore_raw(run, 10)
  for leaf in jax.tree_util.tree_leaves((state["params"], state["batch_stats"], state["opt_state"])):
    assert np.isfinite(np.asarray(leaf)).all()
  assert int(state["step"]) == 10  # the step counter advanced past the skipped update
