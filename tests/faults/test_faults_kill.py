"""Killed and preempted runs lose nothing: SIGINT, SIGTERM, SIGKILL at seeded-random steps, SIGKILL inside a save.

One run of ``experiments/train.py`` (2 CPU devices, pmap over both, 60 steps,
a checkpoint every 5) is stopped four times and then finished; a second,
uninterrupted run is the reference. The interrupted run must end with the same
parameters, batch statistics, optimizer state, step and key, bit for bit, and
with one metrics line per step: the four runs continue each other without a
gap or a duplicate. The same run with ``--config.api=nnx`` checks that the
``NNXTrainState``'s checkpoints resume as the linen ones do.
"""

import json
import os
import signal

import numpy as np
import pytest
from faults_common import (
    HERE,
    STEPS,
    TIMEOUT,
    assert_trees_equal,
    complete_steps,
    last_logged_step,
    restore_raw,
    run,
    start,
    stop,
    tmp_checkpoints,
    train_args,
    train_events,
    wait_for,
)

SLOW_SAVE = os.path.join(HERE, "slow_save_train.py")
HOLD_S = 120  # the held-back commit; the test kills the run long before it ends


def _stop_at_a_checkpoint(process, run, sig, after):
  """Sends ``sig`` once the run has logged step ``after``; returns the step it stopped at.

  SIGINT (Ctrl-C) and SIGTERM (preemption) both end with a checkpoint of the
  current step and exit status 128 + the signal's number.
  """
  wait_for(lambda: last_logged_step(run) >= after, process, f"step {after}")
  status, out, err = stop(process, sig)
  assert status == 128 + sig, err[-3000:]
  name = signal.Signals(sig).name
  assert f"stopped by {name} at step" in err, err[-3000:]
  stopped_at = int(err.split(f"stopped by {name} at step ")[1].split(";")[0])
  assert after <= stopped_at < STEPS
  assert complete_steps(run)[-1] == stopped_at
  assert tmp_checkpoints(run) == []
  return stopped_at, out


@pytest.mark.slow
def test_sigint_sigterm_sigkill_and_kill_inside_a_save_resume_bit_exactly(tmp_path):
  rng = np.random.default_rng(20240601)  # the kill points, reproducibly random
  cache = str(tmp_path / "cache")
  straight = str(tmp_path / "straight")
  run = str(tmp_path / "interrupted")
  reference = start(train_args(straight, cache))
  process = None
  try:
    # 1. SIGINT (Ctrl-C) after a random step, then 2. SIGTERM (preemption)
    #    after another, on the resumed run.
    process = start(train_args(run, cache))
    interrupted_at, _ = _stop_at_a_checkpoint(process, run, signal.SIGINT, int(rng.integers(3, 13)))
    process = start(train_args(run, cache))
    preempted_at, out = _stop_at_a_checkpoint(
        process, run, signal.SIGTERM, interrupted_at + int(rng.integers(3, 9)))
    assert f"resumed from checkpoint step {interrupted_at}" in out

    # 3. SIGKILL after another random step: no handler runs; whatever the
    #    asynchronous writer was doing, the newest committed checkpoint is older.
    after = preempted_at + int(rng.integers(3, 11))
    process = start(train_args(run, cache))
    wait_for(lambda: last_logged_step(run) >= after, process, f"step {after}")
    status, out, _ = stop(process, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert f"resumed from checkpoint step {preempted_at}" in out
    killed_with = complete_steps(run)[-1]
    assert preempted_at <= killed_with <= last_logged_step(run)

    # 4. SIGKILL inside orbax's save of step `held`: the files are written to
    #    '<held>.orbax-checkpoint-tmp', whose rename to '<held>' is held back.
    held = (killed_with // 5 + 2) * 5
    assert held < STEPS
    process = start([str(held), str(HOLD_S), *train_args(run, cache)], script=SLOW_SAVE)
    wait_for(lambda: any(n.startswith(f"{held}.") for n in tmp_checkpoints(run)), process,
             f"the save of step {held} began")
    status, out, _ = stop(process, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert f"resumed from checkpoint step {killed_with}" in out
    leftovers = tmp_checkpoints(run)
    assert any(n.startswith(f"{held}.") for n in leftovers), leftovers
    committed = complete_steps(run)
    # Epoch ends also checkpoint, so the newest complete step is the last one
    # committed before `held`, not necessarily `held - 5`.
    previous = committed[-1]
    assert held not in committed and previous < held, committed

    # 5. Finish: the half-written step is never read; training resumes from
    #    the previous complete one.
    process = start(train_args(run, cache))
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err[-3000:]
    assert f"resumed from checkpoint step {previous}" in out
    _, err_ref = reference.communicate(timeout=TIMEOUT)
    assert reference.returncode == 0, err_ref[-3000:]
  finally:
    for p in (reference, process):
      if p is not None and p.poll() is None:
        p.kill()
        p.wait()

  step, want = restore_raw(straight)
  got_step, got = restore_raw(run)
  assert step == got_step == STEPS
  for key in ("params", "batch_stats", "opt_state", "step", "rng"):
    assert_trees_equal(got[key], want[key])
  assert [e["step"] for e in train_events(run)] == list(range(1, STEPS + 1))
  # Step `held` was written again, over the leftover of the killed save.
  assert tmp_checkpoints(run) == []


@pytest.mark.slow
def test_nnx_run_resumes_bit_exactly_after_sigkill(tmp_path):
  """``--config.api=nnx``: the checkpoints of the ``NNXTrainState`` resume as the linen ones do."""
  cache, nnx = str(tmp_path / "cache"), "--config.api=nnx"
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  result = run(train_args(straight, cache, nnx))
  assert result.returncode == 0, result.stderr[-3000:]
  ref_step, want = restore_raw(straight)
  assert ref_step == STEPS
  process = start(train_args(killed, cache, nnx))
  wait_for(lambda: last_logged_step(killed) >= 17, process, "step 17")
  status, _, err = stop(process, signal.SIGKILL)
  assert status == -signal.SIGKILL, err[-3000:]
  result = run(train_args(killed, cache, nnx))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(killed, "summary.json")) as f:
    assert 5 <= json.load(f)["resumed_from_step"] <= 17
  _, got = restore_raw(killed)
  assert_trees_equal(got["params"], want["params"])
  # The metrics of the two runs continue each other without duplicates.
  assert [e["step"] for e in train_events(killed)] == list(range(1, STEPS + 1))
