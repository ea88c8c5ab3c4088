"""InceptionBlock: branch concatenation, parameter formulas, Inception-v3 factorisations."""

import functools

import jax
import jax.numpy as jnp
import pytest

from cnnjax import blocks, layers
from cnnjax.ops import conv_param_count
from testlib import init_variables

BIASED = functools.partial(layers.Conv, use_bias=True)
ROW = dict(features_1x1=4, features_3x3_reduce=3, features_3x3=6, features_5x5_reduce=2,
           features_5x5=5, features_pool=7)


def _params(block, x):
  return init_variables(block, x, train=False)["params"]  # NumPy draws: nothing compiled


def _count(tree):
  return sum(v.size for v in jax.tree.leaves(tree))


def _kernels(tree):
  return sum(v.size for path, v in jax.tree_util.tree_leaves_with_path(tree)
             if path[-1].key == "kernel")


def test_output_channels_are_concatenated_in_branch_order():
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 5))
  block = blocks.InceptionBlock(**ROW, conv=BIASED, norm=None)
  params = _params(block, x)
  y, state = block.apply({"params": params}, x, train=False, capture_intermediates=True,
                         mutable=["intermediates"])
  assert y.shape == (2, 6, 6, 4 + 6 + 5 + 7) == (2, 6, 6, block.out_features)
  inter = state["intermediates"]
  assert jnp.array_equal(y[..., :4], inter["branch1x1"]["__call__"][0])
  assert jnp.array_equal(y[..., 4:10], inter["branch3x3"]["__call__"][0])
  assert jnp.array_equal(y[..., 10:15], inter["branch5x5"]["__call__"][0])
  assert jnp.array_equal(y[..., 15:], inter["branch_pool"]["__call__"][0])


def test_reduction_formula():
  c_in = 5
  block = blocks.InceptionBlock(**ROW, conv=BIASED, norm=None)
  params = _params(block, jnp.ones((1, 6, 6, c_in)))

  def reduced(c_mid, k, c_out):  # (C_in*1*1 + 1)*C_mid + (C_mid*K*K + 1)*C_out
    return (c_in + 1) * c_mid + (c_mid * k * k + 1) * c_out

  assert _count(params["branch3x3_reduce"]) + _count(params["branch3x3"]) == reduced(3, 3, 6)
  assert _count(params["branch5x5_reduce"]) + _count(params["branch5x5"]) == reduced(2, 5, 5)
  expected = (conv_param_count((1, 1), c_in, 4) + reduced(3, 3, 6) + reduced(2, 5, 5)
              + conv_param_count((1, 1), c_in, 7))
  assert _count(params) == expected


def test_googlenet_inception3a_literal_count():
  # Inception 3a of GoogLeNet (192 -> 256 channels), biased convolutions, no norm:
  # 1x1: 193*64; 3x3: 193*96 + 865*128; 5x5: 193*16 + 401*32; pool: 193*32.
  row = blocks.inception_config((64, 96, 128, 16, 32, 32))
  params = _params(blocks.InceptionBlock(**row, conv=BIASED, norm=None), jnp.ones((1, 4, 4, 192)))
  assert _count(params) == 12352 + 18528 + 110720 + 3088 + 12832 + 6176 == 163696


def test_two_3x3_use_18_25_of_a_5x5():
  c = 8
  row = dict(features_1x1=1, features_3x3_reduce=1, features_3x3=1, features_5x5_reduce=c,
             features_5x5=c, features_pool=1)
  x = jnp.ones((1, 6, 6, c))
  plain = _params(blocks.InceptionBlock(**row, conv=BIASED, norm=None), x)
  factor = _params(blocks.InceptionBlock(**row, conv=BIASED, norm=None, factorize_5x5=True), x)
  w5 = _kernels(plain["branch5x5"])
  w33 = _kernels(factor["branch5x5_a"]) + _kernels(factor["branch5x5_b"])
  assert w5 == 25 * c * c and w33 == 18 * c * c
  assert w33 * 25 == w5 * 18


def test_asymmetric_factorisation():
  c = 6
  row = dict(features_1x1=1, features_3x3_reduce=c, features_3x3=c, features_5x5_reduce=c,
             features_5x5=c, features_pool=1)
  x = jax.random.normal(jax.random.key(2), (1, 7, 7, c))
  block = blocks.InceptionBlock(**row, conv=BIASED, norm=None, asymmetric=True)
  params = _params(block, x)
  assert params["branch3x3_1xn"]["conv"]["kernel"].shape == (1, 3, c, c)
  assert params["branch3x3_nx1"]["conv"]["kernel"].shape == (3, 1, c, c)
  assert _kernels(params["branch5x5_1xn"]) + _kernels(params["branch5x5_nx1"]) == 2 * 5 * c * c
  assert "branch1x1" in params and "branch1x1_1xn" not in params  # 1x1 stays 1x1
  assert block.apply({"params": params}, x, train=False).shape == (1, 7, 7, 1 + c + c + 1)


def test_with_batch_norm_updates_stats():
  x = jax.random.normal(jax.random.key(3), (2, 4, 4, 3))
  block = blocks.InceptionBlock(**ROW, conv=functools.partial(layers.Conv, use_bias=False),
                                norm=layers.BatchNorm)
  variables = init_variables(block, x, train=False)
  _, updates = jax.jit(lambda v: block.apply(v, x, train=True, mutable=["batch_stats"]))(variables)
  before = variables["batch_stats"]["branch1x1"]["norm"]["mean"]
  # One step moves the running mean by O(0.1); allclose's 1e-8 absolute is far below.
  assert not jnp.allclose(before, updates["batch_stats"]["branch1x1"]["norm"]["mean"])


def test_inception_config_validates():
  with pytest.raises(ValueError, match="6 numbers"):
    blocks.inception_config((1, 2, 3))
