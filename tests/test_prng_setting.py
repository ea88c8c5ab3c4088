"""The suite's PRNG implementation is the one the environment asks for (see conftest.py)."""

import os

import jax


def test_threefry_partitionable_follows_the_environment():
  # conftest.py defaults JAX_THREEFRY_PARTITIONABLE to 0 (faster compiles);
  # CI's newest-stack run sets 1, JAX's default, and every test runs under it.
  expected = os.environ["JAX_THREEFRY_PARTITIONABLE"].lower() not in ("0", "false")
  assert jax.config.jax_threefry_partitionable is expected
  # The subprocesses that tests start (resume, kill, multi-host) inherit it.
  assert "JAX_THREEFRY_PARTITIONABLE" in os.environ
