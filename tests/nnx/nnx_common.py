"""Shared helpers of the NNX tests: one compiled program compares the NNX and linen forms."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import cnnjax.nnx as cnnx

from testlib import compile_fast


def nnx_and_linen(model: cnnx.FromLinen, variables, x, key):
  """Outputs and running statistics of the NNX model and of its linen module, in both modes.

  ``variables`` (linen) are copied into ``model`` first. Returns
  ``(nnx_train, nnx_stats, nnx_eval, linen_train, linen_stats, linen_eval)``;
  the stats are those after one training-mode call (``{}`` without BatchNorm),
  and evaluation uses them.
  """
  cnnx.from_linen(model, variables)
  graphdef, state = nnx.split(model)
  linen = model.module
  kw = {"train": True} if model.takes_train else {}
  ekw = {"train": False} if model.takes_train else {}

  def both(state, variables, x, key):
    m = nnx.merge(graphdef, state)
    m.train()
    y_train = m(x, rngs=key)
    stats = cnnx.to_linen(m).get("batch_stats", {})
    m.eval()
    y_eval = m(x)
    mutable = ["batch_stats"] if "batch_stats" in variables else False
    out = linen.apply(variables, x, mutable=mutable, rngs={"dropout": key}, **kw)
    l_train, l_updates = out if mutable else (out, {})
    l_stats = dict(l_updates).get("batch_stats", {})
    # The NNX model evaluates with the statistics its training call updated.
    l_eval = linen.apply({**variables, **dict(l_updates)}, x, **ekw)
    return y_train, stats, y_eval, l_train, l_stats, l_eval

  return compile_fast(both, state, variables, x, key)(state, variables, x, key)


def assert_same(a, b):
  # The NNX module runs the linen module's own program on the same
  # variables: equal up to float32 reassociation XLA may apply when it fuses
  # the two copies differently (relative to the magnitude compared).
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    u, v = np.asarray(u, np.float32), np.asarray(v, np.float32)
    scale = float(np.max(np.abs(v))) + 1e-30
    np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-6 * scale)
  assert jax.tree.structure(a) == jax.tree.structure(b)


def random(shape, seed=1, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)
