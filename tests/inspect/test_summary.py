"""summary, count_params, count_macs: conv/dense MACs arithmetic and XLA's FLOP count."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cnnjax import layers, models
from cnnjax.inspect.summary import count_macs, count_params, summary, trace_layers
from cnnjax.ops import conv_macs, conv_param_count


class _TwoConvs(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.relu(layers.Conv(8, (3, 3), strides=2, padding="SAME", name="conv_a")(x))
    x = layers.Conv(12, (5, 5), padding="VALID", feature_group_count=4, name="conv_b")(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(3, name="dense")(x)


def test_conv_macs_match_ops_arithmetic():
  rows, variables = trace_layers(_TwoConvs(), (1, 16, 16, 4))
  by_path = {r.path: r for r in rows}
  assert by_path["conv_a"].macs == conv_macs((16, 16), (3, 3), 4, 8, 2, "SAME")
  # MACs = prod(out) * prod(K) * C_in / g * C_out, written out: 4*4 * 25 * 8/4 * 12.
  assert by_path["conv_b"].macs == conv_macs((8, 8), (5, 5), 8, 12, 1, "VALID",
                                              feature_group_count=4) == 16 * 25 * 2 * 12
  assert by_path["dense"].macs == 4 * 4 * 12 * 3
  assert by_path["conv_b"].output_shape == (1, 4, 4, 12)
  assert by_path["conv_a"].params == conv_param_count((3, 3), 4, 8)
  assert count_params(variables) == sum(r.params for r in rows if r.path)


def test_macs_scale_with_batch():
  one = count_macs(_TwoConvs(), (1, 16, 16, 4))
  assert count_macs(_TwoConvs(), (3, 16, 16, 4)) == 3 * one


def test_resnet18_macs_are_the_published_figure():
  # 1.82 GMACs for ResNet-18 at 224x224 (He et al.: 1.8e9 "FLOPs", i.e. multiply-adds).
  macs = count_macs(models.create("resnet18"), (1, 224, 224, 3))
  assert macs == 1_814_073_344


def test_count_params_ignores_batch_stats():
  model = models.create("resnet18_cifar")
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3)),
                                                train=False))
  assert count_params(variables) == 11_173_962
  assert count_params(variables["params"]) == 11_173_962


def test_summary_table_lists_layers_and_totals():
  lines = []
  table = summary(models.create("lenet5"), (1, 32, 32, 3), print_fn=lines.append)
  assert lines == [table]
  assert "Total params: 62,006" in table
  assert "Total MACs: 651,720" in table
  row = next(line for line in table.splitlines() if line.startswith("conv1"))
  assert "(1, 28, 28, 6)" in row and "456" in row and "352,800" in row


def test_summary_depth_and_call_kwargs():
  table = summary(models.create("resnet18_cifar", num_filters=8), (1, 16, 16, 3),
                  depth=1, print_fn=None, train=True)
  assert "stage1_block0" in table and "conv1 " not in table
  assert "Non-trainable (batch_stats)" in table


def test_summary_of_token_model():
  table = summary(models.create("textcnn"), (2, 20), dtype=jnp.int32, print_fn=None)
  assert "conv_w3" in table and "Embed" in table


def test_bad_input_shape():
  with pytest.raises(ValueError, match="batch axis"):
    count_macs(_TwoConvs(), (16, 16, -4))


def _xla_flops(model, x):
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  lowered = jax.jit(functools.partial(model.apply, train=False)).lower(variables, x)
  cost = lowered.cost_analysis()
  return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]


@pytest.mark.parametrize("name,kw", [("resnet18_cifar", {"padding": "CIRCULAR"}),
                                     ("lenet5", {})])
def test_macs_agree_with_xla_cost_analysis(name, kw):
  # XLA counts 2 FLOPs per multiply-add, plus norms, pools and activations.
  model = models.create(name, **kw)
  flops = _xla_flops(model, jnp.ones((1, 32, 32, 3)))
  macs = count_macs(model, (1, 32, 32, 3))
  assert 0 <= flops - 2 * macs < 0.03 * 2 * macs, (flops, 2 * macs)


def test_xla_skips_zero_padding_taps():
  # With zero padding folded into the convolution, XLA leaves out the taps that
  # fall on padding (13% of ResNet-18's at 32x32); analytic MACs count every tap,
  # as conv_macs and the published figures do.
  model = models.create("resnet18_cifar")
  flops = _xla_flops(model, jnp.ones((1, 32, 32, 3)))
  macs = count_macs(model, (1, 32, 32, 3))
  assert 0.8 * 2 * macs < flops < 2 * macs
