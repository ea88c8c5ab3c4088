"""One process of the two-process training test (see test_train_multihost.py).

Usage: python multihost_worker.py PORT PROCESS_ID WORKDIR [STRATEGY]

Timeouts, so that a lost peer fails the test instead of hanging it:
``initialization_timeout=60`` s for both processes to reach the coordinator,
``heartbeat_timeout_seconds=30`` s before a silent peer is declared dead, and
``shutdown_timeout_seconds=30`` s for the shutdown barrier. The test adds a
subprocess timeout on top.
"""

import os
import sys

# The suite's compile options (tests/conftest.py): the reference run in the test compiled with them.
os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2 " +
                           os.environ.get("CNNJAX_TEST_XLA_FLAGS", "")).strip()
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main(port: int, process_id: int, workdir: str, strategy: str = "pmap") -> None:
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
      initialization_timeout=60, heartbeat_timeout_seconds=30, shutdown_timeout_seconds=30)
  assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  from multihost_config import config  # noqa: PLC0415

  from cnnjax.train import train_and_evaluate  # noqa: PLC0415

  summary = train_and_evaluate(config(strategy), workdir)
  print("SUMMARY", summary["test_accuracy"], summary["process_count"], flush=True)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
