"""Shift equivariance of convolutions and pooling, proven with cnnjax.testing.

Circular padding at stride 1: exact equivariance to every shift. Zero padding:
equivariance on the interior. Stride s: equivariance to multiples of s only;
max-pooling with stride 2 fails at a shift of 1.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax import layers, ops
from cnnjax.testing import assert_shift_equivariant, assert_shift_invariant, infer_margin
from cnnjax.testing import strategies as cst
from testlib import flat_normal as _flat_normal
from testlib import random as _random


def _conv_fn(config, seed=0):
  kernel, bias = config.init(seed)
  return jax.jit(lambda z: ops.conv(z, kernel, bias, **config.op_kwargs()))


# ------------------------------------------------- ops.conv, circular, stride 1

@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=6)
@given(data=st.data())
def test_circular_conv_commutes_with_every_shift(rank, data):
  config = data.draw(cst.conv_configs(rank, kernel_size=(1, 4) if rank < 3 else (1, 3)))
  x = data.draw(cst.images(rank, batch=(1, 2), spatial=(2, 8 if rank < 3 else 5),
                           channels=config.in_features))
  shift = data.draw(cst.shifts(x.shape[1:-1]))
  # A circular convolution commutes with rolls exactly up to summation order: the default
  # tolerance, 1e-5 of max|f(x)|.
  assert_shift_equivariant(_conv_fn(config), x, shift)


@settings(max_examples=6)
@given(data=st.data())
def test_strided_circular_conv_commutes_with_multiples_of_the_stride(data):
  config = data.draw(cst.conv_configs(2, strides=(1, 3), dilation=(1, 2)))
  x = data.draw(cst.images(2, spatial=(2, 9), multiple_of=config.strides, channels=config.in_features))
  shift = data.draw(cst.shifts(x.shape[1:-1], stride=config.strides))
  assert_shift_equivariant(_conv_fn(config), x, shift, stride=config.strides)


# ------------------------------------------------- zero padding: the interior

@pytest.mark.parametrize("rank", [1, 2])
@settings(max_examples=6)
@given(data=st.data())
def test_zero_padded_conv_commutes_with_shifts_on_the_interior(rank, data):
  config = data.draw(cst.conv_configs(rank, paddings=("SAME", "VALID")))
  x = data.draw(cst.images(rank, batch=1, spatial=(14, 16), channels=config.in_features))
  shift = data.draw(cst.shifts(x.shape[1:-1], max_shift=3))
  assert_shift_equivariant(_conv_fn(config), x, shift, mode="interior")


def test_zero_padded_conv_is_not_circularly_equivariant():
  kernel = _random((3, 3, 2, 2), seed=1)
  fn = jax.jit(lambda z: ops.conv(z, kernel, padding="SAME"))
  x = _random((1, 8, 8, 2))
  with pytest.raises(AssertionError, match=r"mode='circular'.*\n.*max abs error"):
    assert_shift_equivariant(fn, x, (3, 0))
  assert_shift_equivariant(fn, x, (3, 0), mode="interior")


@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), (5, 1), (3, 2), (2, 3)])
def test_inferred_margin_is_the_same_padding(kernel, dilation):
  # At stride 1 the positions that see the border are exactly the 'SAME' pads.
  w = _random((kernel, 1, 1), seed=2)
  fn = lambda z: ops.conv(z, w, padding="SAME", rhs_dilation=dilation)
  _, pads = ops.resolve_padding("SAME", (20,), (kernel,), 1, dilation)
  assert infer_margin(fn, _random((1, 20, 1))) == pads


def test_inferred_margin_of_a_strided_stack_is_conservative_and_sufficient():
  k1, k2 = _random((3, 3, 1, 2), seed=3), _random((3, 3, 2, 1), seed=4)
  fn = jax.jit(lambda z: ops.conv(jax.nn.relu(ops.conv(z, k1, padding="SAME", strides=2)), k2, padding="SAME"))
  x = _random((1, 24, 24, 1))
  (lo, hi), _ = infer_margin(fn, x, stride=2)
  # Receptive field: 3 + 2 * 2 = 7 input pixels, 3 to each side of 2i (+1 for the stride).
  assert lo in (1, 2, 3) and hi in (1, 2, 3)
  for shift in [(2, 0), (-4, 2), (6, -6)]:
    assert_shift_equivariant(fn, x, shift, mode="interior", stride=2)


def test_explicit_margin_too_small_fails_and_zero_margin_is_an_error_when_empty():
  kernel = _random((5, 1, 1), seed=5)
  fn = jax.jit(lambda z: ops.conv(z, kernel, padding="SAME"))
  x = _random((1, 12, 1))
  with pytest.raises(AssertionError, match="margin"):
    assert_shift_equivariant(fn, x, 2, mode="interior", margin=0)
  assert_shift_equivariant(fn, x, 2, mode="interior", margin=2)
  assert_shift_equivariant(fn, x, 2, mode="interior", margin=[(2, 2)])
  with pytest.raises(ValueError, match="no interior left"):
    assert_shift_equivariant(fn, x, 8, mode="interior", margin=2)


def test_margin_cannot_be_inferred_through_a_global_operation():
  fn = lambda z: z - jnp.mean(z, axis=(1, 2), keepdims=True)
  with pytest.raises(ValueError, match="pass margin= explicitly"):
    assert_shift_equivariant(fn, _random((1, 8, 8, 1)), 1, mode="interior")


# ------------------------------------------------- layers

@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=3)
@given(data=st.data())
def test_circular_conv_layer_commutes_with_every_shift(rank, data):
  config = data.draw(cst.conv_configs(rank, kernel_size=(1, 3)))
  x = data.draw(cst.images(rank, batch=1, spatial=(3, 6), channels=config.in_features))
  layer = layers.Conv(**config.layer_kwargs(), kernel_init=_flat_normal)
  variables = jax.jit(layer.init)(jax.random.key(0), x)
  shift = data.draw(cst.shifts(x.shape[1:-1]))
  assert_shift_equivariant(jax.jit(lambda z: layer.apply(variables, z)), x, shift)


@pytest.mark.parametrize("make", [
    lambda: layers.DepthwiseConv(kernel_size=(3, 3), depth_multiplier=2, padding="CIRCULAR", kernel_init=_flat_normal),
    lambda: layers.DepthwiseConv(kernel_size=(3, 2), kernel_dilation=(2, 3), padding="CIRCULAR", kernel_init=_flat_normal),
    lambda: layers.SeparableConv(features=5, kernel_size=(3, 3), padding="CIRCULAR", kernel_init=_flat_normal),
    lambda: layers.Conv(features=6, kernel_size=(3, 3), feature_group_count=3, padding="CIRCULAR", kernel_init=_flat_normal),
    lambda: layers.Conv(features=4, kernel_size=(3, 3), kernel_dilation=2, padding="CIRCULAR", kernel_init=_flat_normal),
    lambda: layers.MaxPool(window_shape=(3, 3), padding="CIRCULAR"),
    lambda: layers.AvgPool(window_shape=(2, 3), padding="CIRCULAR"),
], ids=["depthwise", "depthwise-dilated", "separable", "grouped", "dilated", "maxpool", "avgpool"])
def test_circular_layers_commute_with_shifts(make):
  layer = make()
  x = _random((2, 8, 9, 3), seed=6)
  variables = jax.jit(layer.init)(jax.random.key(1), x)
  fn = jax.jit(lambda z: layer.apply(variables, z))
  for shift in [(1, 0), (0, -3), (5, 7), (-6, 2)]:
    assert_shift_equivariant(fn, x, shift)


def test_conv_layer_with_stride_two_commutes_with_even_shifts_only():
  layer = layers.Conv(features=3, kernel_size=(3, 3), strides=2, padding="CIRCULAR", kernel_init=_flat_normal)
  x = _random((1, 8, 8, 2), seed=7)
  variables = jax.jit(layer.init)(jax.random.key(2), x)
  fn = jax.jit(lambda z: layer.apply(variables, z))
  assert_shift_equivariant(fn, x, (2, -4), stride=2)
  with pytest.raises(ValueError, match="not a multiple of the stride 2"):
    assert_shift_equivariant(fn, x, (1, 0), stride=2)


# ------------------------------------------------- the known failure of strided pooling

def _zhang_signal():
  """Zhang 2019, Fig. 1: max-pooling ``0 0 1 1 0 0 1 1`` with stride 2 gives ``0 1 0 1``;
  shifted by one pixel the signal gives ``1 1 1 1``, no shift of ``0 1 0 1``."""
  return np.array([0, 0, 1, 1, 0, 0, 1, 1], np.float32).reshape(1, 8, 1)


def test_max_pool_with_stride_two_is_not_equivariant_to_a_shift_of_one():
  x = _zhang_signal()
  pool = lambda z: ops.max_pool(z, (2,), strides=(2,))
  np.testing.assert_array_equal(pool(x)[0, :, 0], [0, 1, 0, 1])
  np.testing.assert_array_equal(pool(np.roll(x, 1, axis=1))[0, :, 0], [1, 1, 1, 1])
  # On the input grid (nearest upsampling back to 8), the shift of 1 is not followed ...
  on_input_grid = lambda z: jnp.repeat(pool(z), 2, axis=1)
  with pytest.raises(AssertionError, match=r"shift \(1,\).*\n  max abs error 1 "):
    assert_shift_equivariant(on_input_grid, x, 1)
  # ... while a shift of 2, a multiple of the stride, is.
  assert_shift_equivariant(on_input_grid, x, 2)
  assert_shift_equivariant(pool, x, 2, stride=2)
  # After a global pool the prediction changes: no shift invariance either.
  with pytest.raises(AssertionError, match="not shift-invariant"):
    assert_shift_invariant(lambda z: ops.global_avg_pool(pool(z)), x, 1)


def test_dense_max_pool_is_equivariant_to_a_shift_of_one():
  # The stride, not the max, breaks equivariance: at stride 1 (circular) it holds.
  x = _zhang_signal()
  assert_shift_equivariant(lambda z: ops.max_pool(z, (2,), padding="CIRCULAR"), x, 1)


def test_a_non_multiple_shift_is_a_value_error_that_explains():
  with pytest.raises(ValueError, match=r"shift 1 on axis 1 is not a multiple of the stride 2.*1/2"):
    assert_shift_equivariant(lambda z: z[:, ::2], _zhang_signal(), 1, stride=2)


# ------------------------------------------------- the assertions themselves

def test_a_position_dependent_function_is_caught():
  ramp = jnp.arange(8, dtype=jnp.float32)[None, :, None, None]
  x = _random((1, 8, 8, 1), seed=8)
  with pytest.raises(AssertionError) as info:
    assert_shift_equivariant(lambda z: z * ramp, x, (2, 0))
  message = str(info.value)
  assert "max abs error" in message and "shift (2, 0)" in message and "mode='circular'" in message
  assert "at output index (0, " in message


def test_tolerances_are_applied():
  x = _random((1, 6, 6, 1), seed=9)
  bump = lambda z: z + 1e-3 * (jnp.arange(6)[None, :, None, None] == 0)
  with pytest.raises(AssertionError):
    assert_shift_equivariant(bump, x, (1, 0))
  assert_shift_equivariant(bump, x, (1, 0), atol=2e-3)
  assert_shift_equivariant(bump, x, (1, 0), rtol=1.0, atol=1e-3)


def test_axes_and_per_axis_shifts():
  x = _random((2, 5, 6, 3), seed=10)
  roll_w = lambda z: jnp.roll(z, 1, axis=2) * 2.0  # commutes with shifts on every axis
  assert_shift_equivariant(roll_w, x, 3, axes=2)
  assert_shift_equivariant(roll_w, x, (4, -1), axes=(1, 2))
  with pytest.raises(ValueError, match="one per shifted axis"):
    assert_shift_equivariant(roll_w, x, (1, 2, 3))
  with pytest.raises(ValueError, match="distinct axes"):
    assert_shift_equivariant(roll_w, x, 1, axes=(1, 1))
  with pytest.raises(ValueError, match="mode must be"):
    assert_shift_equivariant(roll_w, x, 1, mode="reflect")


def test_an_output_without_spatial_axes_points_to_invariance():
  x = _random((1, 6, 6, 2))
  with pytest.raises(ValueError, match="use assert_shift_invariant"):
    assert_shift_equivariant(ops.global_avg_pool, x, 1)
  assert_shift_invariant(ops.global_avg_pool, x, (2, 5))
  assert_shift_invariant(ops.global_max_pool, x, (-1, 3), atol=0.0)  # max selects: exact


def test_default_tolerance_scales_with_the_output():
  # Float32 rounding of a reordered sum is relative to its magnitude: a
  # position-dependent error of ~1e-3 on outputs of ~300 (3e-6 relative)
  # passes by default, the same error on outputs of ~1 fails, and so does the
  # large one under an explicit absolute tolerance.
  x = _random((1, 8, 8, 2), seed=11)
  ramp = jnp.arange(8, dtype=jnp.float32)[None, :, None, None]
  small = lambda z: ops.global_avg_pool(z) + 1e-4 * (z * ramp).sum((1, 2))
  big = lambda z: 300.0 + small(z)
  assert_shift_invariant(big, x, (1, 0))
  with pytest.raises(AssertionError, match=r"atol=1e-05, rtol=0"):
    assert_shift_invariant(big, x, (1, 0), atol=1e-5, rtol=0.0)
  with pytest.raises(AssertionError, match=r"rtol x max\|reference\|"):
    assert_shift_invariant(small, x, (1, 0))


def test_invariance_messages_compare_with_f_of_x():
  x = _zhang_signal()
  with pytest.raises(AssertionError) as info:
    assert_shift_invariant(lambda z: z[:, :2], x, 1)
  assert "f(x) = " in str(info.value) and "shift(f(x))" not in str(info.value)


def test_assertion_frames_are_hidden_from_pytest_tracebacks():
  import cnnjax.testing.equivariance as equivariance_module
  x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
  for check in (lambda: assert_shift_equivariant(lambda z: z * z[:, :1], x, (1, 0)),
                lambda: assert_shift_invariant(lambda z: z[:, 0, 0], x, (1, 0))):
    with pytest.raises(AssertionError) as info:
      check()
    shown = info.traceback.filter(info)
    assert shown and all(str(e.path) != equivariance_module.__file__ for e in shown)
