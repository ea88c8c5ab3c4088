"""Pooling: golden values from the material and a loop reference over drawn cases."""

import itertools

import flax.linen as nn
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings

from cnnjax import ops
from testlib import normal

SQUARE = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
MATERIAL_4X4 = jnp.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], jnp.float32)[None, :, :, None]


@pytest.mark.parametrize(
    "strides, padding, expected",
    [
        ((2, 2), "VALID", [[5]]),
        ((2, 2), "SAME", [[5, 6], [8, 9]]),
        ((1, 1), "SAME", [[5, 6, 6], [8, 9, 9], [8, 9, 9]]),
        ((1, 1), "VALID", [[5, 6], [8, 9]]),
    ],
)
def test_material_max_pool_3x3(strides, padding, expected):
  y = ops.max_pool(SQUARE, (2, 2), strides, padding)
  np.testing.assert_array_equal(y[0, :, :, 0], expected)


def test_material_max_and_avg_4x4():
  np.testing.assert_array_equal(ops.max_pool(MATERIAL_4X4, (2, 2), (2, 2))[0, ..., 0], [[6, 8], [3, 4]])
  np.testing.assert_array_equal(ops.avg_pool(MATERIAL_4X4, (2, 2), (2, 2))[0, ..., 0], [[3.25, 5.25], [2, 2]])


def test_max_pool_pads_with_minus_infinity():
  x = -jnp.ones((1, 3, 3, 1))
  # With zero padding the corner would read max(-1, 0) = 0.
  np.testing.assert_array_equal(ops.max_pool(x, (2, 2), (2, 2), "SAME"), -np.ones((1, 2, 2, 1)))


def test_avg_pool_count_include_pad():
  x = jnp.ones((1, 3, 3, 1))
  real = ops.avg_pool(x, (2, 2), (2, 2), "SAME")
  with_pad = ops.avg_pool(x, (2, 2), (2, 2), "SAME", count_include_pad=True)
  np.testing.assert_array_equal(real, np.ones((1, 2, 2, 1)))
  np.testing.assert_array_equal(with_pad[0, :, :, 0], [[1, 0.5], [0.5, 0.25]])
  # Flax's default counts the padding; ours does not (TensorFlow's semantics).
  np.testing.assert_array_equal(nn.avg_pool(x, (2, 2), (2, 2), "SAME"), with_pad)
  np.testing.assert_array_equal(nn.avg_pool(x, (2, 2), (2, 2), "SAME", count_include_pad=False), real)


def test_global_pools():
  x = jnp.arange(2 * 2 * 3 * 4, dtype=jnp.float32).reshape(2, 2, 3, 4)
  # Means of 6 small integers: the default rtol=1e-7 is ~1 eps32 of the value.
  np.testing.assert_allclose(ops.global_avg_pool(x), x.mean(axis=(1, 2)))
  np.testing.assert_array_equal(ops.global_max_pool(x), x.max(axis=(1, 2)))
  assert ops.global_avg_pool(x, keepdims=True).shape == (2, 1, 1, 4)
  assert ops.global_max_pool(jnp.ones((2, 5, 3)), keepdims=True).shape == (2, 1, 3)


def pool_reference(x, window, strides, pads, kind, count_include_pad):
  """Loops over output positions; each output reads its window element by element."""
  x = np.asarray(x, np.float64)
  n, c, rank = x.shape[0], x.shape[-1], len(window)
  spatial = x.shape[1:-1]
  out_shape = tuple((spatial[a] + sum(pads[a]) - window[a]) // strides[a] + 1 for a in range(rank))
  out = np.zeros((n, *out_shape, c))
  for i in itertools.product(*(range(o) for o in out_shape)):
    values, count = [], 0
    for s in itertools.product(*(range(k) for k in window)):
      pos = tuple(i[a] * strides[a] + s[a] - pads[a][0] for a in range(rank))
      if all(0 <= p < spatial[a] for a, p in enumerate(pos)):
        values.append(x[(slice(None), *pos)])
        count += 1
      elif kind == "avg":
        values.append(np.zeros((n, c)))
    stacked = np.stack(values)
    if kind == "max":
      out[(slice(None), *i)] = stacked.max(0)
    else:
      out[(slice(None), *i)] = stacked.sum(0) / (np.prod(window) if count_include_pad else count)
  return out


@st.composite
def pool_cases(draw):
  rank = draw(st.integers(1, 3))
  window = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  spatial = tuple(draw(st.integers(1, 6 if rank < 3 else 4)) for _ in range(rank))
  padding = draw(st.sampled_from(["VALID", "SAME", "explicit"]))
  if padding == "explicit":
    padding = tuple((draw(st.integers(0, 1)), draw(st.integers(0, 1))) for _ in range(rank))
  try:
    _, pads = ops.resolve_padding(padding, spatial, window, strides)
    out = ops.conv_output_shape(spatial, window, strides, padding)
  except ValueError:
    assume(False)
  assume(min(out) >= 1)
  # A window made only of padding has no real element to average or max over.
  for a in range(rank):
    for o in range(out[a]):
      start = o * strides[a] - pads[a][0]
      assume(start + window[a] > 0 and start < spatial[a])
  return rank, window, strides, padding, pads, spatial, draw(st.integers(0, 999)), draw(st.booleans())


@settings(max_examples=20)
@given(pool_cases())
def test_pools_match_loop_reference(case):
  rank, window, strides, padding, pads, spatial, seed, include = case
  x = normal((2, *spatial, 3), np.random.default_rng(seed))
  # Max selects an input: equal up to the reference's float64 round trip (unit-normal x).
  np.testing.assert_allclose(
      ops.max_pool(x, window, strides, padding),
      pool_reference(x, window, strides, pads, "max", include), atol=1e-6)
  # Means of <= 27 unit-normal values: O(1) outputs, rounding ~ window * eps32 ~ 3e-6.
  np.testing.assert_allclose(
      ops.avg_pool(x, window, strides, padding, count_include_pad=include),
      pool_reference(x, window, strides, pads, "avg", include), atol=1e-5, rtol=1e-5)


def test_tiling_fast_path_matches_reduce_window_and_its_gradient():
  x = jax.random.normal(jax.random.key(0), (2, 6, 8, 3))
  # Explicit zero pads disable the reshape path, so this is reduce_window.
  slow = lambda x: ops.max_pool(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
  fast = lambda x: ops.max_pool(x, (2, 2), (2, 2), "VALID")
  np.testing.assert_array_equal(fast(x), nn.max_pool(x, (2, 2), (2, 2)))
  np.testing.assert_array_equal(jax.grad(lambda x: fast(x).sum())(x), jax.grad(lambda x: nn.max_pool(x, (2, 2), (2, 2)).sum())(x))
  np.testing.assert_array_equal(fast(x), slow(x))
  # Means of 4 unit-normal values: O(1) outputs, a few eps32 apart at most.
  np.testing.assert_allclose(ops.avg_pool(x, (2, 2), (2, 2)), nn.avg_pool(x, (2, 2), (2, 2)), atol=1e-6)


def test_pool_errors_name_the_shapes():
  with pytest.raises(ValueError, match=r"rank 4.*\(2, 5, 5\)"):
    ops.max_pool(jnp.ones((2, 5, 5)), (2, 2))
  with pytest.raises(TypeError, match="floating"):
    ops.avg_pool(jnp.ones((1, 4, 4, 1), jnp.int32), (2, 2))
  with pytest.raises(ValueError, match="window"):
    ops.max_pool(jnp.ones((1, 2, 2, 1)), (3, 3))
