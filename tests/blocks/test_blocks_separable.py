"""SeparableBlock and InvertedResidual; AdaptiveAvgPool; ConvNormAct."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import blocks, layers
from testlib import assert_close, init_variables, normal

CONV = functools.partial(layers.Conv, use_bias=False)


def _init(block, x):
  """Variables of ``init``'s shapes, drawn with NumPy: no random initialiser is compiled."""
  return init_variables(block, x, train=False)


def _real_init(block, x):
  """``block.init`` itself, where the test relies on what it initialises."""
  return block.init(jax.random.key(0), x, train=False)


def _count(tree):
  return sum(v.size for v in jax.tree.leaves(tree))


def test_separable_block_weights_and_shape():
  c, f = 8, 16
  x = normal((2, 6, 6, c), seed=1)
  block = blocks.SeparableBlock(f, conv=CONV, norm=layers.BatchNorm, strides=2)
  variables = _init(block, x)
  params = variables["params"]
  assert params["depthwise"]["kernel"].shape == (3, 3, 1, c)
  assert params["pointwise"]["kernel"].shape == (1, 1, c, f)
  assert _count(params["depthwise"]) + _count(params["pointwise"]) == c * (9 + f)
  assert block.apply(variables, x, train=False).shape == (2, 3, 3, f)


@pytest.mark.parametrize("strides,c_in,c_out,residual", [(1, 8, 8, True), (2, 8, 8, False),
                                                         (1, 8, 12, False)])
def test_inverted_residual(strides, c_in, c_out, residual):
  x = normal((2, 8, 8, c_in), seed=2)
  block = blocks.InvertedResidual(c_out, 6, conv=CONV, norm=layers.BatchNorm, strides=strides)
  variables = _real_init(block, x)
  params = variables["params"]
  hidden = 6 * c_in
  assert params["expand"]["conv"]["kernel"].shape == (1, 1, c_in, hidden)
  assert params["depthwise"]["conv"]["kernel"].shape == (3, 3, 1, hidden)
  assert params["project_conv"]["kernel"].shape == (1, 1, hidden, c_out)
  y = block.apply(variables, x, train=False)
  assert y.shape == (2, 8 // strides, 8 // strides, c_out)
  # Zero projection: the block outputs x (residual) or the projection norm's bias (0).
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.zeros_like(v) if p[0].key == "project_norm" and p[-1].key == "scale" else v,
      variables["params"])
  y0 = block.apply({**variables, "params": zeroed}, x, train=False)
  # The projection is exactly 0 (zero scale); x is unit-normal, so 1e-6 is ~10 eps32 of it.
  np.testing.assert_allclose(y0, x if residual else jnp.zeros_like(y0), atol=1e-6)


def test_inverted_residual_projection_is_linear_and_expansion_optional():
  x = -jnp.ones((1, 4, 4, 4))
  block = blocks.InvertedResidual(4, 1, conv=CONV, norm=None)
  params = _init(block, x)["params"]
  assert "expand" not in params
  # The depthwise stage is ReLU6-clipped; the projection output can be negative.
  w = jnp.ones_like(params["depthwise"]["conv"]["kernel"])
  p = -jnp.ones_like(params["project_conv"]["kernel"])
  y = block.apply({"params": {"depthwise": {"conv": {"kernel": -w}}, "project_conv": {"kernel": p}}}, x)
  assert float(y.min()) < -1.0  # x + projection of relu6(positive) < x


def test_relu6_caps_hidden_activation():
  x = 100 * jnp.ones((1, 4, 4, 2))
  block = blocks.InvertedResidual(2, 2, conv=CONV, norm=None, strides=2)
  variables = _init(block, x)
  _, state = block.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  assert float(state["intermediates"]["depthwise"]["__call__"][0].max()) <= 6.0


@pytest.mark.parametrize("size,out", [((12, 12), (6, 6)), ((13, 11), (6, 6)), ((1, 1), (7, 7)),
                                       ((5, 3), (2, 4))])
def test_adaptive_avg_pool_matches_pytorch_bins(size, out):
  x = np.asarray(normal((2, *size, 3), seed=3))
  got = np.asarray(blocks.adaptive_avg_pool(jnp.asarray(x), out))
  want = np.zeros((2, *out, 3), np.float32)
  for i in range(out[0]):
    h0, h1 = i * size[0] // out[0], -(-(i + 1) * size[0] // out[0])
    for j in range(out[1]):
      w0, w1 = j * size[1] // out[1], -(-(j + 1) * size[1] // out[1])
      want[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  # Means over adaptive windows in two orders, relative to the largest mean.
  assert_close(got, want, rtol=1e-5)


def test_conv_norm_act_antialiased_order():
  x = normal((1, 8, 8, 3), seed=4)
  unit = blocks.ConvNormAct(4, 3, conv=CONV, norm=layers.BatchNorm, strides=2,
                            downsample=blocks.downsample_def("blur"))
  variables = _init(unit, x)
  y, state = unit.apply(variables, x, train=False, capture_intermediates=True,
                        mutable=["intermediates"])
  assert state["intermediates"]["conv"]["__call__"][0].shape == (1, 8, 8, 4)
  assert y.shape == (1, 4, 4, 4)
  # Blur follows the ReLU: its input is non-negative, so its output is too.
  assert float(y.min()) >= 0.0
