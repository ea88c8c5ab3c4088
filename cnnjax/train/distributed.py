"""Several processes: ``jax.distributed`` from the run config, with bounded timeouts.

``initialize(config)`` joins this process to the others named by
``config.distributed`` before anything touches a device; ``experiments/train.py``
calls it first, so a multi-process run is the single-process command with
three more flags::

  python experiments/train.py --config experiments/configs/digits_cnn.py \\
      --workdir /shared/runs/digits \\
      --config.distributed.coordinator_address=10.0.0.1:1234 \\
      --config.distributed.num_processes=2 --config.distributed.process_id=0

The three timeouts decide how long a run waits for a process that is gone:

* ``initialization_timeout_s`` (default 300): every process must reach the
  coordinator within this time, else ``initialize`` raises
  ``DistributedError``.
* ``heartbeat_timeout_s`` (default 100): a process that sends no heartbeat for
  this long counts as dead; the coordination service then ends every other
  process with an error, so a run whose peer was killed exits non-zero within
  about this time instead of waiting forever inside a collective. (When the
  peer's connection simply closes, the CPU collectives fail at once.)
* ``shutdown_timeout_s`` (default 300): how long the shutdown barrier at the
  end waits for the others.

On CPU the cross-process collectives are gloo's
(``jax_cpu_collectives_implementation='gloo'``); on GPU and TPU that option
is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax


class DistributedError(RuntimeError):
  """The processes of a multi-process run could not meet (or lost each other)."""


def _get(section: Any, key: str) -> Any:
  return section[key] if isinstance(section, Mapping) else getattr(section, key)


def _positive_int(value: Any, key: str) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"config distributed.{key} must be a positive int, got {value!r}")
  return value


def initialize(config: Any) -> bool:
  """Calls ``jax.distributed.initialize`` as ``config.distributed`` says.

  Args:
    config: a run config (``cnnjax.train.config.base_config``); only its
      ``distributed`` section is read.

  Returns:
    ``True`` if this process joined a multi-process run (or one was already
    initialised), ``False`` for a single-process run (no coordinator address
    in the config or in ``$JAX_COORDINATOR_ADDRESS``, and no process count).

  Raises:
    ValueError: a malformed ``distributed`` section (address without a port,
      a process id out of range, a non-positive timeout).
    DistributedError: the processes did not meet within
      ``initialization_timeout_s``.
  """
  section = _get(config, "distributed")
  address = _get(section, "coordinator_address") or os.environ.get("JAX_COORDINATOR_ADDRESS")
  num_processes = _get(section, "num_processes")
  process_id = _get(section, "process_id")
  timeouts = {key: _positive_int(_get(section, key), key) for key in
              ("initialization_timeout_s", "heartbeat_timeout_s", "shutdown_timeout_s")}
  if jax.distributed.is_initialized():
    return True
  if address is None and num_processes is None and process_id is None:
    return False
  if address is not None and (":" not in address or not address.rsplit(":", 1)[1].isdigit()):
    raise ValueError(
        f"config distributed.coordinator_address must be 'host:port', got {address!r}")
  if num_processes is not None:
    _positive_int(num_processes, "num_processes")
    if process_id is None or not 0 <= process_id < num_processes:
      raise ValueError(
          f"config distributed.process_id must be in [0, {num_processes}) for "
          f"distributed.num_processes={num_processes}, got {process_id!r}")
  # Cross-process collectives on CPU need gloo; GPU and TPU ignore the option.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(
        coordinator_address=address, num_processes=num_processes, process_id=process_id,
        initialization_timeout=timeouts["initialization_timeout_s"],
        heartbeat_timeout_seconds=timeouts["heartbeat_timeout_s"],
        shutdown_timeout_seconds=timeouts["shutdown_timeout_s"])
  except (RuntimeError, ValueError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise DistributedError(
        f"process {process_id} of {num_processes} could not join the run at "
        f"{address} ({first}); every process must start with the same coordinator "
        f"address and num_processes, and reach it within "
        f"distributed.initialization_timeout_s={timeouts['initialization_timeout_s']} s") from e
  return True


def lost_process_message(error: BaseException) -> str:
  """The message for a collective that failed because another process of the run is gone."""
  first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
  return (f"process {jax.process_index()} of {jax.process_count()} lost contact with "
          f"another process of the run ({first[:300]}). If a process was killed or "
          f"preempted, restart every process with the same command: training resumes "
          f"from the newest checkpoint.")


def shutdown() -> None:
  """Leaves the multi-process run (``jax.distributed.shutdown``) if one was joined."""
  if jax.distributed.is_initialized():
    jax.distributed.shutdown()
