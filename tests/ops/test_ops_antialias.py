"""Blur pooling and adaptive polyphase sampling: taps, shapes, references, shifts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax.testing import assert_shift_equivariant, assert_shift_invariant
from cnnjax.testing import strategies as cst
from testlib import random as _random


# ---------------------------------------------------------------- binomial_filter

def test_binomial_filter_size5_is_1_4_6_4_1_over_16():
  np.testing.assert_array_equal(ops.binomial_filter(5, rank=1) * 16, [1, 4, 6, 4, 1])
  np.testing.assert_array_equal(ops.binomial_filter(3, rank=1) * 4, [1, 2, 1])
  np.testing.assert_array_equal(ops.binomial_filter(1, rank=1), [1.0])


@pytest.mark.parametrize("size", range(1, 8))
def test_binomial_filter_taps_are_pascal_rows(size):
  taps = ops.binomial_filter(size, rank=1)
  row = [math.comb(size - 1, k) for k in range(size)]
  # Binomial taps over a power of two are exact in float64: integers up to 2**(size-1).
  np.testing.assert_allclose(taps * 2 ** (size - 1), row, rtol=0, atol=1e-12)
  assert taps.sum() == pytest.approx(1.0)


def test_binomial_filter_2d_and_3d_are_outer_products():
  a = ops.binomial_filter(4, rank=1)
  # Products of dyadic fractions are exact: the default rtol=1e-7 only allows for nothing.
  np.testing.assert_allclose(ops.binomial_filter(4), np.outer(a, a))
  three = ops.binomial_filter(3, rank=3)
  assert three.shape == (3, 3, 3)
  assert three[1, 1, 1] == pytest.approx(8 / 64)
  assert three.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("size", [0, 8, 2.5, True])
def test_binomial_filter_rejects_sizes_outside_1_to_7(size):
  with pytest.raises(ValueError, match="filter_size must be an int in 1..7"):
    ops.binomial_filter(size)


# ---------------------------------------------------------------- blur_pool

def _blur_reference(x, size, stride, mode):
  """Loops over positions: pad as a stride-1 'SAME' blur, correlate each channel, keep every s-th."""
  taps = ops.binomial_filter(size, rank=1)
  lo, hi = (size - 1) // 2, size // 2
  np_mode = {"REFLECT": "reflect", "CIRCULAR": "wrap", "SAME": "constant"}[mode]
  padded = np.pad(np.asarray(x, np.float64), ((0, 0), (lo, hi), (lo, hi), (0, 0)), mode=np_mode)
  n, h, w, c = x.shape
  blurred = np.zeros((n, h, w, c))
  for i in range(h):
    for j in range(w):
      for s in range(size):
        for t in range(size):
          blurred[:, i, j] += taps[s] * taps[t] * padded[:, i + s, j + t]
  return blurred[:, ::stride, ::stride]


@pytest.mark.parametrize("mode", ["REFLECT", "CIRCULAR", "SAME"])
@pytest.mark.parametrize("size,stride,shape", [(3, 2, (2, 8, 7, 3)), (5, 2, (1, 9, 10, 2)), (4, 3, (1, 7, 6, 1)), (1, 2, (1, 4, 5, 2))])
def test_blur_pool_matches_loop_reference(mode, size, stride, shape):
  x = _random(shape, seed=size)
  y = ops.blur_pool(x, size, stride, mode)
  # <= 5**rank taps of unit-normal inputs with weights summing to 1: outputs are O(1), and
  # two summation orders differ by ~taps * eps32 ~ 1e-5 at worst.
  np.testing.assert_allclose(y, _blur_reference(x, size, stride, mode), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["REFLECT", "CIRCULAR"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_blur_of_a_constant_is_the_constant(mode, rank):
  x = np.full((2, *(6,) * rank, 3), 2.5, np.float32)
  y = ops.blur_pool(x, 5, 2, mode)
  assert y.shape == (2, *(3,) * rank, 3)
  # A weighted mean of equal values: a few eps32 relative to the value.
  np.testing.assert_allclose(y, 2.5, rtol=1e-6)


def test_zero_padding_darkens_only_the_border():
  y = np.asarray(ops.blur_pool(np.ones((1, 9, 9, 1), np.float32), 3, 2, "SAME"))
  # A weighted mean of ones: a few eps32 relative to the value.
  np.testing.assert_allclose(y[0, 1:-1, 1:-1, 0], 1.0, rtol=1e-6)
  assert y[0, 0, 0, 0] < 1.0


@pytest.mark.parametrize("n,stride,expected", [(8, 2, 4), (7, 2, 4), (9, 3, 3), (10, 3, 4)])
def test_blur_pool_output_size_is_ceil_n_over_stride(n, stride, expected):
  assert ops.blur_pool(_random((1, n, n, 2)), 3, stride).shape == (1, expected, expected, 2)


def test_blur_pool_valid_and_per_axis_strides():
  x = _random((1, 9, 8, 2))
  assert ops.blur_pool(x, 3, 2, "VALID").shape == (1, 4, 3, 2)
  assert ops.blur_pool(x, 3, (1, 2)).shape == (1, 9, 4, 2)


def test_blur_pool_reflect_on_a_tiny_map_names_the_filter_size():
  with pytest.raises(ValueError, match=r"filter_size=5 .*'REFLECT'.*\(2, 2\)"):
    ops.blur_pool(_random((1, 2, 2, 3)), 5, 2, "REFLECT")


def test_blur_pool_input_errors():
  with pytest.raises(ValueError, match="1, 2 or 3 spatial axes"):
    ops.blur_pool(_random((4, 4)))
  with pytest.raises(TypeError, match="floating"):
    ops.blur_pool(np.ones((1, 4, 4, 1), np.int32))
  with pytest.raises(ValueError, match="padding must be one of"):
    ops.blur_pool(_random((1, 4, 4, 1)), padding="MIRROR")


@settings(max_examples=10)
@given(x=cst.images(spatial=(2, 6), multiple_of=2), size=st.integers(1, 5), data=st.data())
def test_circular_blur_pool_commutes_with_even_shifts(x, size, data):
  shift = data.draw(cst.shifts(x.shape[1:-1], stride=2))
  fn = jax.jit(lambda z: ops.blur_pool(z, size, 2, "CIRCULAR"))
  assert_shift_equivariant(fn, x, shift, stride=2)


# ---------------------------------------------------------------- polyphase

def test_polyphase_components_are_the_strided_phases():
  x = _random((2, 6, 4, 3))
  comps = ops.polyphase_components(x, (3, 2))
  assert comps.shape == (2, 6, 2, 2, 3)
  for k in range(6):
    i, j = np.unravel_index(k, (3, 2))
    np.testing.assert_array_equal(comps[:, k], x[:, i::3, j::2])


def test_polyphase_downsample_keeps_the_component_of_largest_norm():
  x = _random((5, 6, 6, 2), seed=3)
  y, index = ops.polyphase_downsample(x, 2)
  comps = np.asarray(ops.polyphase_components(x, 2))
  norms = np.sqrt((comps.reshape(5, 4, -1).astype(np.float64) ** 2).sum(-1))
  np.testing.assert_array_equal(index, norms.argmax(1))
  assert index.dtype == jnp.int32
  np.testing.assert_array_equal(y, comps[np.arange(5), norms.argmax(1)])


def test_polyphase_downsample_with_inf_and_l1_norms():
  x = np.zeros((1, 4, 4, 1), np.float32)
  x[0, 1, 0, 0] = 5.0  # component (1, 0): largest max
  x[0, ::2, 1::2, 0] = 1.0  # component (0, 1): largest l1 (4) and l2 (2)
  assert int(ops.polyphase_downsample(x, 2, p=jnp.inf)[1][0]) == 2
  # l1: component (1, 0) sums to 5, (0, 1) to 4; l2: 5 against 2.
  assert int(ops.polyphase_downsample(x, 2, p=1)[1][0]) == 2
  x[0, 1, 0, 0] = 1.5
  assert int(ops.polyphase_downsample(x, 2, p=1)[1][0]) == 1
  assert int(ops.polyphase_downsample(x, 2, p=2)[1][0]) == 1


_aps = jax.jit(ops.polyphase_downsample, static_argnums=(1, 2))


@settings(max_examples=10)
@given(x=cst.images(rank=1, spatial=(2, 8), multiple_of=2), data=st.data())
def test_polyphase_output_is_a_circular_shift_under_any_input_shift_1d(x, data):
  (t,) = data.draw(cst.shifts(x.shape[1:-1]))
  y, _ = _aps(x, 2, 2)
  y_shifted, _ = _aps(np.roll(x, t, axis=1), 2, 2)
  y, y_shifted = np.asarray(y), np.asarray(y_shifted)
  # Per example, the kept component is some circular shift of the unshifted one.
  for n in range(x.shape[0]):
    assert any(np.array_equal(np.roll(y[n], u, axis=0), y_shifted[n]) for u in range(y.shape[1]))


@settings(max_examples=10)
@given(x=cst.images(spatial=(2, 8), multiple_of=2), data=st.data())
def test_polyphase_then_global_pool_is_invariant_to_every_shift(x, data):
  shift = data.draw(cst.shifts(x.shape[1:-1]))
  fn = jax.jit(lambda z: ops.global_avg_pool(ops.polyphase_downsample(z, 2)[0]))
  assert_shift_invariant(fn, x, shift, atol=1e-6)


def test_plain_subsampling_then_global_pool_is_not_invariant_to_odd_shifts():
  x = _random((2, 8, 8, 3), seed=4)
  fn = lambda z: ops.global_avg_pool(z[:, ::2, ::2])
  with pytest.raises(AssertionError, match="not shift-invariant"):
    assert_shift_invariant(fn, x, (1, 0))


def test_polyphase_downsample_with_a_given_index():
  x = _random((3, 4, 6, 2), seed=5)
  index = np.array([3, 0, 1], np.int32)
  y, kept = ops.polyphase_downsample(x, 2, index=index)
  comps = np.asarray(ops.polyphase_components(x, 2))
  np.testing.assert_array_equal(y, comps[np.arange(3), index])
  np.testing.assert_array_equal(kept, index)
  with pytest.raises(ValueError, match=r"index must be an int array of shape \(N,\) = \(3,\)"):
    ops.polyphase_downsample(x, 2, index=np.zeros(2, np.int32))


def test_polyphase_rejects_sizes_not_divisible_by_the_stride():
  with pytest.raises(ValueError, match=r"divisible by the stride.*\(7, 8\).*\(2, 2\).*\(8, 8\)"):
    ops.polyphase_downsample(_random((1, 7, 8, 2)), 2)
  with pytest.raises(ValueError, match="p must be a positive number"):
    ops.polyphase_downsample(_random((1, 4, 4, 2)), 2, p=0)
