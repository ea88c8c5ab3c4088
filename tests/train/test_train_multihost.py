"""Two processes x two CPU devices train like one process x four devices.

The processes meet through ``jax.distributed`` on a local port with the gloo
CPU collectives; each reads its half of every global batch
(``make_loader(process_index=...)``). Process 0 alone writes the logs; both
take part in the checkpoints.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import portpicker
import pytest

from testlib import assert_trees_close

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 240  # seconds per process; jax.distributed has its own timeouts inside


def _params(workdir, step):
  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             item_names=("state", "data")) as manager:
    assert manager.latest_step() == step
    return manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), data=ocp.args.JsonRestore()))


def _reference(tmp_path, strategy):
  """One process x four devices under the same strategy: the run two processes must end at.

  The same strategy, because digits_cnn's dropout draws its masks per device
  under pmap and for the global batch under jit (the same for 1 x 4 and 2 x 2).
  """
  sys.path.insert(0, HERE)
  from multihost_config import config

  from cnnjax.train import train_and_evaluate

  single = str(tmp_path / "single")
  return single, train_and_evaluate(config(strategy), single, devices=jax.local_devices()[:4])


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["pmap", "jit"])
def test_two_processes_match_one_process_with_four_devices(tmp_path, strategy):
  single, reference = _reference(tmp_path, strategy)
  multi = str(tmp_path / "multi")
  port = portpicker.pick_unused_port()
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  workers = [subprocess.Popen(
      [sys.executable, os.path.join(HERE, "multihost_worker.py"), str(port), str(i), multi,
       strategy],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
  outputs = []
  try:
    for w in workers:
      outputs.append(w.communicate(timeout=TIMEOUT))
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()
  for w, (out, err) in zip(workers, outputs):
    assert w.returncode == 0, err[-4000:]
    assert "SUMMARY" in out and out.split("SUMMARY")[1].split()[1] == "2"

  got, want = _params(multi, 6), _params(single, 6)
  # Same global batches, same four-way reductions; gloo's all-reduce may add
  # the four partial sums in another order than the in-process one (and jit's
  # partitioned sums differ from pmap's psum in order too), so equal up to
  # float32 rounding (1e-6 relative), compounded over six steps. 1e-5 of the
  # state's largest entry also covers entries that stay near zero.
  assert_trees_close(got["state"], want["state"], rtol=1e-5)
  assert got["data"]["step"] == want["data"]["step"] == 6
  # Only process 0 wrote the run files; its summary matches the reference.
  with open(os.path.join(multi, "summary.json")) as f:
    summary = json.load(f)
  assert summary["process_count"] == 2 and len(summary["devices"]) == 4
  assert summary["test_count"] == reference["test_count"] == 360
  # A mean over 360 examples of the (slightly different) parameters above: 10x their rtol.
  np.testing.assert_allclose(summary["test_loss"], reference["test_loss"], rtol=1e-4)
  with open(os.path.join(multi, "metrics.jsonl")) as f:
    train_steps = [e["step"] for e in map(json.loads, f) if e["split"] == "train"]
  assert train_steps == [2, 4, 6]  # one writer: no duplicated events
  assert sorted(os.listdir(os.path.join(multi, "checkpoints")), key=int) == ["3", "4", "6"]
