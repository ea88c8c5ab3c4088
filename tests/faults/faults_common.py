"""What the fault tests share: a tiny run of ``experiments/train.py`` and ways to read it back.

A run is the digits smoke config cut to ``STEPS`` steps of 32 examples from a
256-example subset (8 steps an epoch), on 2 CPU devices, a checkpoint every 5
steps and a metrics line every step, so that a test can stop it after any
step by watching ``metrics.jsonl``.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
from testlib import last_logged_step, send_and_wait, tiny_config  # noqa: F401  (re-exported for the fault tests)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(ROOT, "experiments", "train.py")
CONFIG = os.path.join(ROOT, "experiments", "configs", "digits_cnn.py")
STEPS = 60
TIMEOUT = 240  # seconds for any one subprocess; a hung run fails the test
#: Text that means a raw trace reached the user instead of a message.
RAW_TRACE = ("Traceback", "XlaRuntimeError", "JaxRuntimeError", "jaxlib")


def train_args(workdir: str, cache_dir: str, *extra: str, steps: int = STEPS) -> list[str]:
  """Arguments of ``experiments/train.py`` for the tiny run (no interpreter, no script)."""
  return [
      "--config", CONFIG + ":smoke",
      "--workdir", workdir,
      f"--config.num_train_steps={steps}",
      "--config.data.train_subset=256",
      "--config.batch_size=32",
      "--config.checkpoint_every_steps=5",
      "--config.log_every_steps=1",
      "--config.eval_every_epochs=100",
      "--config.max_to_keep=3",
      "--config.plots=False",
      f"--config.compilation_cache_dir={cache_dir}",
      *extra,
  ]


def env(devices: int = 2) -> dict[str, str]:
  """The environment of a subprocess run: ``devices`` CPU devices, a warm compilation cache."""
  out = dict(os.environ)
  # The suite's compile options (tests/conftest.py), so that a subprocess compiles as the test does.
  out["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                      f"{os.environ.get('CNNJAX_TEST_XLA_FLAGS', '')}").strip()
  out["JAX_PLATFORMS"] = "cpu"
  out["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return out


def run(args: list[str], *, script: str = TRAIN, devices: int = 2,
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
  """Runs ``script`` with ``args`` to the end; returns the completed process (text output)."""
  return subprocess.run([sys.executable, script, *args], env=env(devices), capture_output=True,
                        text=True, timeout=timeout, cwd=ROOT)


def start(args: list[str], *, script: str = TRAIN, devices: int = 2) -> subprocess.Popen:
  """Starts ``script`` with ``args``; stdout and stderr are pipes (text)."""
  return subprocess.Popen([sys.executable, script, *args], env=env(devices),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)




def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = TIMEOUT) -> None:
  """Polls ``condition()`` every 20 ms; fails if ``process`` ends or ``timeout`` passes first."""
  deadline = time.time() + timeout
  while not condition():
    if process.poll() is not None or time.time() > deadline:
      if process.poll() is None:
        process.kill()
      _, err = process.communicate()
      raise AssertionError(f"the run ended or hung before {what}: {err[-3000:]}")
    time.sleep(0.02)


def stop(process: subprocess.Popen, signum: int, timeout: float = TIMEOUT) -> tuple[int, str, str]:
  """Sends ``signum`` and waits; returns ``(status, stdout, stderr)``."""
  return send_and_wait(process, signum, timeout)


def complete_steps(workdir: str) -> list[int]:
  """Committed checkpoint steps (``checkpoints/<step>`` directories), ascending."""
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    return []
  return sorted(int(d) for d in os.listdir(root) if d.isdigit())


def tmp_checkpoints(workdir: str) -> list[str]:
  """Names of orbax's uncommitted checkpoint directories (``<step>.orbax-checkpoint-tmp*``)."""
  return sorted(os.path.basename(p) for p in
                glob.glob(os.path.join(workdir, "checkpoints", "*.orbax-checkpoint-tmp*")))


def restore_raw(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """``(step, state)`` of a checkpoint (default the newest), read without a target, as numpy."""
  import orbax.checkpoint as ocp

  with ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                             item_names=("state", "data")) as manager:
    step = manager.latest_step() if step is None else step
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored["state"]


def assert_trees_equal(a, b) -> None:
  """Same structure, and every leaf ``np.array_equal`` (bit for bit)."""
  import jax

  paths_a = jax.tree_util.tree_leaves_with_path(a)
  paths_b = jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in paths_a] == [p for p, _ in paths_b]
  assert paths_a
  for (path, x), (_, y) in zip(paths_a, paths_b):
    assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


def train_events(workdir: str) -> list[dict]:
  """The ``split == 'train'`` events of ``metrics.jsonl``."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [e for e in map(json.loads, f) if e["split"] == "train"]


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
  """Non-zero exit, an ``error:`` line containing every needle, and no raw trace."""
  assert result.returncode != 0, result.stdout[-2000:]
  for text in RAW_TRACE:
    assert text not in result.stderr, result.stderr[-4000:]
  assert "error:" in result.stderr, result.stderr[-4000:]
  for needle in needles:
    assert needle in result.stderr, (needle, result.stderr[-4000:])
