"""Residual blocks: shapes, projection shortcut, zero-init, antialiased downsampling, swaps."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import blocks, layers
from cnnjax.ops import conv_param_count
from testlib import assert_close, init_variables, normal

CONV = functools.partial(layers.Conv, use_bias=False)
NORM = functools.partial(layers.BatchNorm, momentum=0.9)


def _init(block, x):
  """Variables of ``init``'s shapes, drawn with NumPy: no random initialiser is compiled."""
  return init_variables(block, x, train=False)


def _real_init(block, x):
  """``block.init`` itself, for the tests of what it initialises."""
  return block.init(jax.random.key(0), x, train=False)


def _count(tree):
  return sum(v.size for v in jax.tree.leaves(tree))


@pytest.mark.parametrize("strides,c_in", [(1, 8), (2, 8), (1, 4)])
def test_basic_block_shape_and_shortcut(strides, c_in):
  x = normal((2, 8, 8, c_in), seed=1)
  block = blocks.BasicBlock(8, conv=CONV, norm=NORM, strides=strides)
  variables = _init(block, x)
  y = block.apply(variables, x, train=False)
  assert y.shape == (2, 8 // strides, 8 // strides, 8)
  projected = strides != 1 or c_in != 8
  assert ("shortcut_conv" in variables["params"]) == projected
  expected = (conv_param_count((3, 3), c_in, 8, use_bias=False)
              + conv_param_count((3, 3), 8, 8, use_bias=False))
  expected += 2 * 2 * 8  # two norms, scale and bias
  if projected:
    expected += conv_param_count((1, 1), c_in, 8, use_bias=False) + 2 * 8
  assert _count(variables["params"]) == expected


def test_bottleneck_v15_stride_on_3x3():
  x = jnp.ones((1, 8, 8, 16))
  block = blocks.Bottleneck(4, conv=CONV, norm=NORM, strides=2)
  params = _init(block, x)["params"]
  y = block.apply({"params": params, "batch_stats": _init(block, x)["batch_stats"]}, x, train=False)
  assert y.shape == (1, 4, 4, 16)
  assert params["conv1"]["kernel"].shape == (1, 1, 16, 4)
  assert params["conv2"]["kernel"].shape == (3, 3, 4, 4)
  assert params["conv3"]["kernel"].shape == (1, 1, 4, 16)
  # v1.5: the first 1x1 keeps the resolution, the 3x3 halves it.
  _, state = block.apply(_init(block, x), x, train=False, capture_intermediates=True,
                         mutable=["intermediates"])
  inter = state["intermediates"]
  assert inter["conv1"]["__call__"][0].shape == (1, 8, 8, 4)
  assert inter["conv2"]["__call__"][0].shape == (1, 4, 4, 4)


def test_zero_init_last_norm_makes_identity_plus_relu():
  x = normal((2, 6, 6, 8), seed=2)
  block = blocks.BasicBlock(8, conv=CONV, norm=NORM, zero_init_last_norm=True)
  variables = _real_init(block, x)
  np.testing.assert_array_equal(variables["params"]["norm2"]["scale"], 0.0)
  np.testing.assert_array_equal(variables["params"]["norm1"]["scale"], 1.0)
  y = block.apply(variables, x, train=False)
  # The residual branch is exactly 0 (zero scale); x is unit-normal, so 1e-6 is ~10 eps32 of it.
  np.testing.assert_allclose(y, nn.relu(x), atol=1e-6)


def test_bottleneck_zero_init_targets_norm3():
  x = jnp.ones((1, 4, 4, 16))
  params = _real_init(blocks.Bottleneck(4, conv=CONV, norm=NORM, zero_init_last_norm=True),
                      x)["params"]
  np.testing.assert_array_equal(params["norm3"]["scale"], 0.0)
  np.testing.assert_array_equal(params["norm2"]["scale"], 1.0)


def test_symmetric_padding_matches_pytorch_not_same():
  # PyTorch pads a stride-2 3x3 by 1 on both sides; 'SAME' on an even input pads (0, 1).
  x = normal((1, 8, 8, 2), seed=3)
  block = blocks.BasicBlock(2, conv=CONV, norm=None, strides=2)
  variables = _init(block, x)
  kernel = variables["params"]["conv1"]["kernel"]
  _, state = block.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
  got = state["intermediates"]["conv1"]["__call__"][0]
  want = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  # The same convolution, 9 * C_in terms of O(1) values, relative to the largest output.
  assert_close(got, want, rtol=1e-5)


@pytest.mark.parametrize("mode", ["blur", "aps"])
@pytest.mark.parametrize("cls", [blocks.BasicBlock, blocks.Bottleneck])
def test_antialiased_block_replaces_stride(mode, cls):
  x = normal((2, 8, 8, 4), seed=4)
  down = blocks.downsample_def(mode)
  block = cls(4, conv=CONV, norm=NORM, strides=2, downsample=down)
  variables = _init(block, x)
  capture = lambda module, method: method in ("__call__", "with_index")
  y, state = block.apply(variables, x, train=False, capture_intermediates=capture,
                         mutable=["intermediates"])
  width = 4 * (4 if cls is blocks.Bottleneck else 1)
  assert y.shape == (2, 4, 4, width)
  inter = state["intermediates"]
  # Convolutions run at stride 1; the downsampling layers halve the resolution.
  conv = "conv1" if cls is blocks.BasicBlock else "conv2"
  assert inter[conv]["__call__"][0].shape[1:3] == (8, 8)
  # APS is called through with_index, which also returns the kept phase.
  main = inter["downsample"].get("__call__", inter["downsample"].get("with_index"))[0]
  assert (main[0] if isinstance(main, tuple) else main).shape[1:3] == (4, 4)
  assert inter["shortcut_downsample"]["__call__"][0].shape[1:3] == (4, 4)
  assert np.isfinite(np.asarray(y)).all()


def test_downsample_def_validates():
  assert blocks.downsample_def("stride") is None
  with pytest.raises(ValueError, match="'stride', 'blur', 'aps'"):
    blocks.downsample_def("maxpool")


def test_norm_swap_groupnorm_without_train_argument():
  x = normal((2, 4, 4, 8), seed=5)
  norm = functools.partial(nn.GroupNorm, num_groups=2)
  block = blocks.BasicBlock(8, conv=CONV, norm=norm)
  variables = block.init(jax.random.key(0), x, train=True)
  assert "batch_stats" not in variables
  assert block.apply(variables, x, train=True).shape == x.shape


def test_conv_swap_separable():
  x = jnp.ones((1, 4, 4, 8))
  block = blocks.BasicBlock(8, conv=functools.partial(layers.Conv, feature_group_count=8,
                                                      use_bias=False), norm=None)
  params = _init(block, x)["params"]
  assert params["conv1"]["kernel"].shape == (3, 3, 1, 8)


def test_block_rejects_rank3_input():
  with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
    _init(blocks.BasicBlock(8, conv=CONV, norm=NORM), jnp.ones((4, 4, 8)))
