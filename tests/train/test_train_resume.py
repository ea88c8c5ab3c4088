"""An interrupted NNX run resumes to the same parameters, bit for bit.

Each run is ``experiments/train.py --config.api=nnx`` in a subprocess with 2
CPU devices (pmap over both). The kill lands between (or during) checkpoints;
the resumed run must end with parameters ``np.array_equal`` to a run that was
never stopped. The linen state's SIGINT, SIGTERM and SIGKILL resumes are in
``tests/faults/test_faults_kill.py``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from testlib import last_logged_step, send_and_wait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 60
TIMEOUT = 240  # seconds for any one subprocess; a hung run fails the test


def _command(workdir, cache_dir, *extra):
  return [
      sys.executable, os.path.join(ROOT, "experiments", "train.py"),
      "--config", os.path.join(ROOT, "experiments", "configs", "digits_cnn.py:smoke"),
      "--workdir", workdir,
      f"--config.num_train_steps={STEPS}",
      "--config.data.train_subset=256",
      "--config.batch_size=32",
      "--config.checkpoint_every_steps=5",
      "--config.log_every_steps=1",
      "--config.eval_every_epochs=100",
      "--config.max_to_keep=2",
      "--config.plots=False",
      f"--config.compilation_cache_dir={cache_dir}",
      *extra,
  ]


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
  env["JAX_PLATFORMS"] = "cpu"
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return env


def _run(workdir, cache_dir, *extra):
  result = subprocess.run(_command(workdir, cache_dir, *extra), env=_env(), capture_output=True,
                          text=True, timeout=TIMEOUT)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _interrupt(workdir, cache_dir, sig, after_step, *extra):
  """Starts a run, sends ``sig`` once it has logged ``after_step``; returns the exit status."""
  process = subprocess.Popen(_command(workdir, cache_dir, *extra), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + TIMEOUT
  try:
    while last_logged_step(workdir) < after_step:
      if process.poll() is not None or time.time() > deadline:
        raise AssertionError(f"run ended or hung before step {after_step}: "
                             f"{process.stderr.read()[-3000:]}")
      time.sleep(0.02)
  except BaseException:
    process.kill()
    process.wait()
    raise
  status, _, stderr = send_and_wait(process, sig, TIMEOUT)
  return status, stderr


def _final_params(workdir):
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             item_names=("state", "data")) as manager:
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored["state"]["params"]


def _assert_equal_params(a, b):
  import jax
  leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_nnx_run_resumes_bit_exactly_after_sigkill(tmp_path):
  """``--config.api=nnx``: the checkpoints of the ``NNXTrainState`` resume as the linen ones do."""
  cache, nnx = str(tmp_path / "cache"), "--config.api=nnx"
  _run(str(tmp_path / "straight"), cache, nnx)
  ref_step, ref_params = _final_params(str(tmp_path / "straight"))
  assert ref_step == STEPS
  run = str(tmp_path / "killed")
  status, stderr = _interrupt(run, cache, signal.SIGKILL, 17, nnx)
  assert status == -signal.SIGKILL, stderr[-3000:]
  resumed = _run(run, cache, nnx)
  assert 5 <= resumed["resumed_from_step"] <= 17
  _, params = _final_params(run)
  _assert_equal_params(params, ref_params)
  # The metrics of the two runs continue each other without duplicates.
  with open(os.path.join(run, "metrics.jsonl")) as f:
    train_steps = [e["step"] for e in map(json.loads, f) if e["split"] == "train"]
  assert train_steps == list(range(1, STEPS + 1))
