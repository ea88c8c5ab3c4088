"""Shape, parameter, MAC and receptive-field arithmetic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops


def test_material_parameter_counts():
  assert ops.conv_param_count((3, 3), 3, 6) == 168
  assert ops.dense_param_count(3072, 6) == 18_438
  assert ops.conv_param_count((3, 3), 3, 6, use_bias=False) == 162
  # Groups: (2*2*12/3 + 1) * 6.
  assert ops.conv_param_count((2, 2), 12, 6, feature_group_count=3) == 102


def test_parameter_count_matches_flax():
  import flax.linen as nn
  for kernel, c_in, c_out, groups in [((3, 3), 3, 6, 1), ((5,), 4, 8, 2), ((2, 3, 1), 6, 6, 3)]:
    layer = nn.Conv(c_out, kernel, feature_group_count=groups)
    x = jnp.ones((1, *(8,) * len(kernel), c_in))
    params = jax.eval_shape(layer.init, jax.random.key(0), x)["params"]
    count = sum(np.prod(p.shape) for p in jax.tree.leaves(params))
    assert count == ops.conv_param_count(kernel, c_in, c_out, groups)


def test_receptive_field_rule():
  assert ops.receptive_field([3, 3]).size == 5
  assert ops.receptive_field([3, 3, 3]).size == 7
  rf = ops.receptive_field([(3, 1), (2, 2), (3, 1)])  # conv, pool/2, conv
  assert rf.sizes == (3, 4, 8) and rf.jumps == (1, 2, 2)
  assert ops.receptive_field([(3, 1, 2)]).size == 5  # a dilated 3-tap kernel spans 5


def test_receptive_field_equals_measured_support():
  # The gradient of one output unit is non-zero exactly on its receptive field.
  layers = [(3, 1), (3, 2), (3, 1, 2)]
  x = jnp.ones((1, 40, 1))

  def net(x):
    for k, s, *d in layers:
      x = ops.conv(x, jnp.ones((k, 1, 1)), strides=s, rhs_dilation=d[0] if d else 1)
    return x

  y = net(x)
  g = jax.grad(lambda x: net(x)[0, y.shape[1] // 2, 0])(x)
  assert int(jnp.sum(g[0, :, 0] != 0)) == ops.receptive_field(layers).size


def test_macs():
  # 26*26 outputs, 3*3*12 taps each, 10 filters.
  assert ops.conv_macs((28, 28), (3, 3), 12, 10) == 26 * 26 * 9 * 12 * 10
  assert ops.conv_macs((8, 8), (3, 3), 4, 4, padding="SAME", feature_group_count=4) == 64 * 9 * 4


def _xla_flops(padding):
  x, w = jnp.ones((1, 16, 16, 8)), jnp.ones((3, 3, 8, 16))
  cost = jax.jit(lambda x, w: ops.conv(x, w, padding=padding)).lower(x, w).compile().cost_analysis()
  return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_macs_agree_with_xla_cost_analysis():
  # XLA counts a multiply and an add per MAC.
  assert _xla_flops("VALID") == 2 * ops.conv_macs((16, 16), (3, 3), 8, 16)
  # With zero padding XLA skips the taps that fall on the padding: per axis
  # 16 * 3 - 2 real taps instead of 16 * 3. conv_macs counts every tap, as
  # papers and MFU figures do.
  # Both sides are counts (exact integers in float64); approx's 1e-6 absorbs the float ratio.
  assert _xla_flops("SAME") == pytest.approx(2 * ops.conv_macs((16, 16), (3, 3), 8, 16, padding="SAME") * (46 / 48) ** 2)


def test_output_shape_helpers():
  assert ops.conv_output_shape((28, 28), (3, 3)) == (26, 26)
  assert ops.conv_output_shape((28, 28), (2, 2), (2, 3)) == (14, 9)
  assert ops.conv_output_shape((28, 28), (2, 2), padding="SAME") == (28, 28)
  assert ops.conv_output_shape((7, 7), (3, 3), 3) == (2, 2)
  assert ops.conv_output_shape((10,), (3,), padding="CAUSAL", kernel_dilation=2) == (10,)
  assert ops.conv_transpose_output_shape((28, 28), (3, 3), 2) == (57, 57)
  assert ops.conv_transpose_output_shape((28, 28), (3, 3), kernel_dilation=2) == (32, 32)
  assert ops.conv_transpose_output_shape((5,), (1,), 2) == (10,)  # kernel < stride, as lax
  assert ops.same_padding(3, 2, 1) == (0, 1)  # the odd element goes high, as TF


def test_padding_spec_errors():
  with pytest.raises(ValueError, match="one of"):
    ops.resolve_padding("FULL", (5, 5), (3, 3))
  with pytest.raises(ValueError, match="CAUSAL.*1-D"):
    ops.resolve_padding("CAUSAL", (5, 5), (3, 3))
  with pytest.raises(ValueError, match="REFLECT"):
    ops.resolve_padding("REFLECT", (2, 2), (5, 5))
  with pytest.raises(ValueError, match="one entry per spatial dimension"):
    ops.resolve_padding(((1, 1),), (5, 5), (3, 3))
  with pytest.raises(ValueError, match="non-negative"):
    ops.resolve_padding(((1, -1), (0, 0)), (5, 5), (3, 3))
  with pytest.raises(ValueError, match="strides"):
    ops.conv_output_shape((5, 5), (3, 3), strides=(1, 1, 1))
  assert ops.resolve_padding(1, (5, 5), (3, 3)) == ("constant", ((1, 1), (1, 1)))
  assert ops.resolve_padding("circular", (5,), (3,)) == ("wrap", ((1, 1),))
