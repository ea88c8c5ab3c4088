"""Conv, DepthwiseConv and SeparableConv: parity with flax.linen, counts, dtypes, errors."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax.layers import Conv, DepthwiseConv, SeparableConv
from testlib import assert_close
from testlib import normal as _normal
from testlib import random_variables

KEY = jax.random.key(0)


def _variables(layer, x, seed=2):
  # Half-scale weights keep the outputs of stacked tests near unit size.
  return random_variables(layer, x, seed, scale=0.5)


def _n_params(variables):
  return sum(math.prod(a.shape) for a in jax.tree.leaves(variables["params"]))


def _flax_parity(x, **kw):
  """Runs flax.linen.Conv and Conv on the same parameters."""
  ref = nn.Conv(**kw)
  variables = _variables(ref, x)
  expected = ref.apply(variables, x)
  got = Conv(**kw).apply(variables, x)
  assert got.shape == expected.shape
  # Two summation orders of the same <= K*C_in = 81 products of O(1) values: rounding relative to the
  # largest output; a wrong tap or index moves outputs by O(max|y|).
  assert_close(got, expected, rtol=1e-5)
  return got


@pytest.mark.parametrize("kw", [
    dict(features=4, kernel_size=(3,), padding="VALID"),
    dict(features=4, kernel_size=(3,), padding="CAUSAL", kernel_dilation=2),
    dict(features=4, kernel_size=(3, 3), strides=2, padding="SAME"),
    dict(features=4, kernel_size=(3, 2), strides=(2, 1), padding=((1, 0), (2, 1))),
    dict(features=4, kernel_size=(3, 3), padding=1, kernel_dilation=2),
    dict(features=4, kernel_size=(3, 3), padding=[1, 2], input_dilation=2),
    dict(features=6, kernel_size=(2, 2), padding="SAME", feature_group_count=2),
    dict(features=4, kernel_size=(3, 3), padding="CIRCULAR"),
    dict(features=4, kernel_size=(4, 3), padding="REFLECT"),
    dict(features=4, kernel_size=(3, 3), use_bias=False),
    dict(features=4, kernel_size=(2, 3, 2), strides=(1, 2, 1), padding="SAME"),
    dict(features=6, kernel_size=(3, 3, 3), padding="VALID", feature_group_count=3),
])
def test_conv_matches_flax(kw):
  rank = len(kw["kernel_size"])
  x = _normal((2, *(7,) * rank, 6))
  _flax_parity(x, **kw)


@settings(max_examples=10)
@given(
    rank=st.integers(1, 2),
    size=st.integers(3, 7),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    dilation=st.integers(1, 2),
    padding=st.sampled_from(["SAME", "VALID", 1, ((0, 1),)]),
    groups=st.sampled_from([1, 2]),
)
def test_conv_matches_flax_hypothesis(rank, size, kernel, stride, dilation, padding, groups):
  assume(size >= (kernel - 1) * dilation + 1)
  if padding == ((0, 1),):
    padding = ((0, 1),) * rank
  x = _normal((2, *(size,) * rank, 2 * groups), seed=size)
  _flax_parity(x, features=2 * groups, kernel_size=(kernel,) * rank, strides=stride,
               padding=padding, kernel_dilation=dilation, feature_group_count=groups)


def test_conv_matches_reference_definition():
  x = _normal((1, 6, 5, 4))
  layer = Conv(4, (3, 2), strides=(2, 1), padding="SAME", feature_group_count=2)
  variables = _variables(layer, x)
  y = layer.apply(variables, x)
  p = variables["params"]
  expected = ops.conv_reference(x, p["kernel"], p["bias"], strides=(2, 1), padding="SAME",
                                feature_group_count=2)
  # Reference loops vs lax, <= 9 * C_in / groups terms: relative to the largest output.
  assert_close(y, expected, rtol=1e-5)


@pytest.mark.parametrize("kernel, c_in, c_out, groups, dilation, use_bias", [
    ((5,), 3, 8, 1, 1, True),
    ((3, 3), 3, 6, 1, 1, True),
    ((3, 3), 8, 12, 4, 2, True),
    ((3, 3), 8, 8, 8, 1, False),
    ((2, 3, 3), 4, 6, 2, (1, 2, 2), True),
])
def test_conv_param_count(kernel, c_in, c_out, groups, dilation, use_bias):
  x = jnp.zeros((1, *(9,) * len(kernel), c_in))
  variables = jax.eval_shape(
      Conv(c_out, kernel, kernel_dilation=dilation, feature_group_count=groups,
           use_bias=use_bias).init, KEY, x)
  assert _n_params(variables) == ops.conv_param_count(kernel, c_in, c_out, groups, use_bias)
  assert variables["params"]["kernel"].shape == (*kernel, c_in // groups, c_out)


def test_conv_initialisers_follow_flax():
  x = jnp.zeros((1, 8, 8, 16))
  p = Conv(32, (3, 3)).init(KEY, x)["params"]
  np.testing.assert_array_equal(p["bias"], 0.0)
  # LeCun normal: variance 1 / fan_in with fan_in = 3 * 3 * 16.
  assert abs(float(jnp.std(p["kernel"])) - (1 / 144) ** 0.5) < 0.01
  ones = Conv(2, (3, 3), kernel_init=nn.initializers.ones, bias_init=nn.initializers.ones)
  q = ones.init(KEY, x)["params"]
  np.testing.assert_array_equal(q["kernel"], 1.0)
  np.testing.assert_array_equal(q["bias"], 1.0)


def test_conv_bf16_compute_float32_params():
  x = _normal((2, 8, 8, 3))
  layer = Conv(4, (3, 3), dtype=jnp.bfloat16)
  y, variables = jax.jit(layer.init_with_output)(KEY, x)
  assert y.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
  y32 = Conv(4, (3, 3)).apply(variables, x)
  # bfloat16 inputs and products (8-bit mantissa, 2**-8 relative) summed over 27 terms of
  # O(0.5) values: a few 1e-2 on outputs of O(1).
  np.testing.assert_allclose(y.astype(jnp.float32), y32, rtol=0.05, atol=0.05)
  # Without dtype, a bf16 input and float32 params compute in float32, as in Flax.
  assert Conv(4, (3, 3)).apply(variables, x.astype(jnp.bfloat16)).dtype == jnp.float32


def test_depthwise_conv():
  x = _normal((2, 7, 7, 3))
  layer = DepthwiseConv((3, 3), depth_multiplier=2, padding="VALID")
  variables = _variables(layer, x)
  y = layer.apply(variables, x)
  p = variables["params"]
  # Keras' layout (kH, kW, C_in, depth_multiplier).
  assert p["kernel"].shape == (3, 3, 3, 2) and p["bias"].shape == (6,)
  assert y.shape == (2, 5, 5, 6)
  # Output channel c * m + j reads only input channel c, with filter kernel[..., c, j].
  for c in range(3):
    single = ops.conv(x[..., c:c + 1], p["kernel"][:, :, c:c + 1, :], p["bias"][2 * c:2 * c + 2])
    # 9-term sums in two orders, relative to the largest output.
    assert_close(y[..., 2 * c:2 * c + 2], single, rtol=1e-5)
  assert _n_params(variables) == ops.conv_param_count((3, 3), 3, 6, feature_group_count=3)
  # Equal to the grouped Conv whose kernel is the reshaped one.
  grouped = {"kernel": p["kernel"].reshape(3, 3, 1, 6), "bias": p["bias"]}
  # The same 9-term sums through another lowering, relative to the largest output.
  assert_close(
      Conv(6, (3, 3), padding="VALID", feature_group_count=3).apply({"params": grouped}, x),
      y, rtol=1e-5)


def test_depthwise_init_uses_true_fan_in():
  x = jnp.zeros((1, 4, 4, 64))
  p = jax.jit(DepthwiseConv((3, 3)).init)(KEY, x)["params"]
  # LeCun normal with fan_in = 3 * 3 (one channel per filter), not 3 * 3 * 64.
  assert abs(float(jnp.std(p["kernel"])) - (1 / 9) ** 0.5) < 0.05


def test_separable_conv_shapes_and_count_as_keras():
  x = jnp.ones((4, 28, 28, 12))
  layer = SeparableConv(features=6, kernel_size=(2, 2), padding="VALID")
  y, variables = jax.eval_shape(layer.init_with_output, KEY, x)
  shapes = jax.tree.map(jnp.shape, variables["params"])
  assert shapes == {"depthwise": {"kernel": (2, 2, 12, 1)},
                    "pointwise": {"kernel": (1, 1, 12, 6), "bias": (6,)}}
  assert y.shape == (4, 27, 27, 6)
  assert _n_params(variables) == 2 * 2 * 12 + 12 * 6 + 6 == 126


def test_separable_conv_is_depthwise_then_pointwise():
  x = _normal((2, 6, 6, 4))
  layer = SeparableConv(5, (3, 3), strides=2, depth_multiplier=2)
  variables = _variables(layer, x)
  y = layer.apply(variables, x)
  p = variables["params"]
  depthwise = p["depthwise"]["kernel"].reshape(3, 3, 1, 8)
  mid = ops.conv(x, depthwise, strides=2, padding="SAME", feature_group_count=4)
  expected = ops.conv(mid, p["pointwise"]["kernel"], p["pointwise"]["bias"])
  # Depthwise then pointwise, composed the same way in two lowerings: relative to max|y|.
  assert_close(y, expected, rtol=1e-5)
  assert y.dtype == jnp.float32


def test_conv_rejects_nchw_input():
  layer = Conv(8, (3, 3))
  variables = _variables(layer, jnp.zeros((2, 32, 32, 3)))
  with pytest.raises(ValueError, match=r"expected NHWC.*3 channels.*\(2, 3, 32, 32\).*looks channels-first \(NCHW"):
    layer.apply(variables, jnp.zeros((2, 3, 32, 32)))


def test_conv_rejects_channel_mismatch():
  layer = Conv(8, (3, 3), feature_group_count=2)
  variables = _variables(layer, jnp.zeros((2, 9, 9, 4)))
  with pytest.raises(ValueError, match=r"4 channels.*got shape \(2, 9, 9, 6\) with 6 channels"):
    layer.apply(variables, jnp.zeros((2, 9, 9, 6)))
  with pytest.raises(ValueError, match="feature_group_count=2"):
    jax.eval_shape(Conv(8, (3, 3), feature_group_count=2).init, KEY, jnp.zeros((2, 9, 9, 3)))


def test_conv_rejects_wrong_rank_and_dtype():
  with pytest.raises(ValueError, match=r"expected NHWC input of rank 4.*got shape \(9, 9, 3\).*x\[None\]"):
    jax.eval_shape(Conv(8, (3, 3)).init, KEY, jnp.zeros((9, 9, 3)))
  with pytest.raises(ValueError, match=r"expected NWC.*kernel_size=3.*1-D.*\(3, 3\)"):
    jax.eval_shape(Conv(8, 3).init, KEY, jnp.zeros((2, 9, 9, 3)))
  with pytest.raises(TypeError, match="floating"):
    jax.eval_shape(Conv(8, (3, 3)).init, KEY, jnp.zeros((2, 9, 9, 3), jnp.int32))
  with pytest.raises(ValueError, match="kernel_size"):
    jax.eval_shape(Conv(8, (3, 0)).init, KEY, jnp.zeros((2, 9, 9, 3)))


def test_depthwise_rejects_nchw_input():
  layer = DepthwiseConv((3, 3), depth_multiplier=2)
  variables = _variables(layer, jnp.zeros((2, 16, 16, 3)))
  with pytest.raises(ValueError, match=r"looks channels-first \(NCHW"):
    layer.apply(variables, jnp.zeros((2, 3, 16, 16)))
