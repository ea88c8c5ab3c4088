"""Pooling layers: parity with flax.linen.max_pool/avg_pool, global pools, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnjax.layers import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from testlib import assert_close
from testlib import normal as _normal


def _apply(layer, x):
  return layer.apply({}, x)


@settings(max_examples=10)
@given(
    rank=st.integers(1, 3),
    size=st.integers(2, 6),
    window=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.sampled_from(["VALID", "SAME", "explicit"]),
    include=st.booleans(),
)
def test_pools_match_flax(rank, size, window, stride, padding, include):
  assume(window <= size)
  if padding == "explicit":
    padding = ((1, 0),) * rank
  x = _normal((2, *(size,) * rank, 3), seed=size)
  shape, strides = (window,) * rank, (stride,) * rank
  # Max selects an input (unit-normal): equal up to a float32 round trip.
  np.testing.assert_allclose(
      _apply(MaxPool(shape, strides, padding), x),
      nn.max_pool(x, shape, strides, padding), rtol=1e-6)
  # Means of <= 27 unit-normal values: O(1), a few eps32 apart in another order.
  np.testing.assert_allclose(
      _apply(AvgPool(shape, strides, padding, count_include_pad=include), x),
      nn.avg_pool(x, shape, strides, padding, count_include_pad=include), rtol=1e-5, atol=1e-6)


def test_avg_pool_count_include_pad_default_differs_from_flax():
  x = jnp.ones((1, 4, 4, 1))
  ours = _apply(AvgPool((3, 3), padding="SAME"), x)
  flax_default = nn.avg_pool(x, (3, 3), padding="SAME")
  np.testing.assert_allclose(ours, 1.0)  # only real elements counted; means of ones, ~1 eps32
  assert float(flax_default[0, 0, 0, 0]) == pytest.approx(4 / 9)  # zeros counted
  np.testing.assert_allclose(_apply(AvgPool((3, 3), padding="SAME", count_include_pad=True), x),
                             flax_default)


def test_max_pool_default_stride_is_one_as_flax():
  x = _normal((2, 6, 6, 2))
  assert _apply(MaxPool((2, 2)), x).shape == (2, 5, 5, 2)
  assert _apply(MaxPool((2, 2), (2, 2)), x).shape == (2, 3, 3, 2)


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pools(keepdims):
  x = _normal((2, 5, 4, 3))
  avg, mx = _apply(GlobalAvgPool(keepdims), x), _apply(GlobalMaxPool(keepdims), x)
  # Means of 20 unit-normal values in two orders: relative to the largest mean.
  assert_close(avg, x.mean((1, 2), keepdims=keepdims), rtol=1e-6)
  np.testing.assert_array_equal(mx, x.max((1, 2), keepdims=keepdims))  # max selects: exact
  assert avg.shape == ((2, 1, 1, 3) if keepdims else (2, 3))
  x3 = _normal((2, 3, 3, 3, 4))
  assert _apply(GlobalAvgPool(), x3).shape == (2, 4)


def test_pooling_errors():
  with pytest.raises(ValueError, match=r"MaxPool: expected NHWC input of rank 4.*\(5, 5, 3\)"):
    _apply(MaxPool((2, 2)), jnp.zeros((5, 5, 3)))
  with pytest.raises(ValueError, match="window_shape must be a tuple"):
    _apply(AvgPool(2), jnp.zeros((1, 5, 5, 3)))
  with pytest.raises(ValueError, match=r"GlobalAvgPool.*rank >= 3.*\(4, 3\)"):
    _apply(GlobalAvgPool(), jnp.zeros((4, 3)))
  with pytest.raises(TypeError, match="floating"):
    _apply(GlobalMaxPool(), jnp.zeros((1, 4, 4, 3), jnp.int32))


def test_pooling_modules_compose_under_jit():
  x = _normal((2, 8, 8, 3))

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = MaxPool((2, 2), (2, 2))(x)
      x = AvgPool((3, 3), (1, 1), "SAME")(x)
      return GlobalAvgPool()(x)

  y = jax.jit(Net().apply)({}, x)
  assert y.shape == (2, 3)
  expected = nn.max_pool(x, (2, 2), (2, 2))
  expected = nn.avg_pool(expected, (3, 3), (1, 1), "SAME", count_include_pad=False).mean((1, 2))
  # Pooled means of O(1) values in two orders: relative to the largest output.
  assert_close(y, expected, rtol=1e-5)
