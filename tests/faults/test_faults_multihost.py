"""A process of a multi-process run dies: the other one exits with an error, promptly.

Two ``experiments/train.py`` processes (2 CPU devices each) meet through
``jax.distributed`` on 127.0.0.1 with gloo collectives
(``--config.distributed.*``). Process 1 is SIGKILLed mid-training; process 0
must exit non-zero within ``BOUND_S`` seconds instead of waiting forever in
its next collective. ``heartbeat_timeout_s=10`` bounds the case where the
dead peer's connection does not even close; here gloo sees it close and the
survivor leaves at once with a message.
"""

import signal
import subprocess
import time

import portpicker
import pytest
from faults_common import TIMEOUT, last_logged_step, start, stop, tiny_config, train_args, wait_for

from cnnjax.train import distributed

BOUND_S = 60


@pytest.mark.slow
def test_survivor_exits_with_an_error_when_a_process_is_killed(tmp_path):
  workdir = str(tmp_path / "run")
  port = portpicker.pick_unused_port()
  flags = [f"--config.distributed.coordinator_address=127.0.0.1:{port}",
           "--config.distributed.num_processes=2",
           "--config.distributed.heartbeat_timeout_s=10",
           "--config.distributed.initialization_timeout_s=120",
           "--config.distributed.shutdown_timeout_s=10"]
  processes = [start(train_args(workdir, "", *flags, f"--config.distributed.process_id={i}",
                                steps=100_000)) for i in range(2)]
  survivor, victim = processes
  try:
    wait_for(lambda: last_logged_step(workdir) >= 3, survivor, "step 3", timeout=TIMEOUT)
    status, _, _ = stop(victim, signal.SIGKILL)
    assert status == -signal.SIGKILL
    killed_at = time.time()
    try:
      _, err = survivor.communicate(timeout=BOUND_S)
    except subprocess.TimeoutExpired:
      raise AssertionError(f"the survivor still runs {BOUND_S} s after its peer was killed")
    waited = time.time() - killed_at
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()
  assert survivor.returncode != 0 and waited < BOUND_S
  if survivor.returncode == 1:  # left through experiments/train.py's handler
    assert "error: process 0 of 2 lost contact with another process of the run" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("section,match", [
    ({"coordinator_address": "127.0.0.1"}, r"coordinator_address must be 'host:port', got '127.0.0.1'"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 2},
     r"process_id must be in \[0, 2\) for distributed.num_processes=2, got 2"),
    ({"heartbeat_timeout_s": 0}, r"distributed.heartbeat_timeout_s must be a positive int, got 0"),
])
def test_distributed_section_mistakes(section, match):
  config = tiny_config(**{f"distributed.{k}": v for k, v in section.items()})
  with pytest.raises(ValueError, match=match):
    distributed.initialize(config)


def test_single_process_needs_no_initialization(monkeypatch):
  monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
  assert distributed.initialize(tiny_config()) is False
