"""The blocks and layers of ConvNeXt, ResNeXt, Wide ResNets, EfficientNet and DenseNet."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import blocks, layers
from testlib import compile_fast

CONV = functools.partial(layers.Conv, use_bias=False)
BN = functools.partial(layers.BatchNorm, momentum=0.9)


def _jit(fn, *args):
  """One compiled program instead of one per eager op (each im2col piece compiles alone)."""
  return compile_fast(fn, *args)(*args)


def _shapes(module, x, **kw):
  variables = jax.eval_shape(lambda: module.init(jax.random.key(0), x, **kw))
  out = jax.eval_shape(lambda v: module.apply(v, x, **kw), variables)
  return jax.tree.map(lambda a: a.shape, variables["params"]), out.shape


def test_drop_path_drops_whole_examples_and_keeps_the_mean():
  x = jnp.ones((4000, 2, 2, 3))
  layer = layers.DropPath(0.25)
  y = jax.jit(lambda x, k: layer.apply({}, x, train=True, rngs={"dropout": k}))(
      x, jax.random.key(0))
  per_example = np.asarray(y).reshape(4000, -1)
  # Each example is all zeros or all 1 / 0.75: the branch is dropped whole.
  assert np.all((per_example == 0) | np.isclose(per_example, 1 / 0.75, rtol=1e-6))
  assert (per_example.min(1) == per_example.max(1)).all()
  kept = (per_example[:, 0] > 0).mean()
  # 4000 Bernoulli(0.75) draws: standard deviation 0.0068; 5 of them.
  assert abs(kept - 0.75) < 0.035
  np.testing.assert_array_equal(layer.apply({}, x, train=False), x)
  np.testing.assert_array_equal(layers.DropPath(0.0).apply({}, x, train=True), x)
  with pytest.raises(ValueError, match=r"rate must be in \[0, 1\), got 1.0"):
    layers.DropPath(1.0).apply({}, x, train=True, rngs={"dropout": jax.random.key(0)})


def test_layer_scale_and_squeeze_excite():
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 8))
  v = layers.LayerScale(0.5).init(jax.random.key(0), x)
  assert v["params"]["gamma"].shape == (8,)
  np.testing.assert_allclose(layers.LayerScale(0.5).apply(v, x), 0.5 * x)
  se = layers.SqueezeExcite(2)
  v = _jit(lambda x: se.init(jax.random.key(0), x), x)
  assert v["params"]["fc1"]["kernel"].shape == (1, 1, 8, 2)
  assert v["params"]["fc2"]["kernel"].shape == (1, 1, 2, 8)
  p = jax.tree.map(np.asarray, v["params"])
  pooled = np.asarray(x).mean((1, 2))
  hidden = pooled @ p["fc1"]["kernel"][0, 0] + p["fc1"]["bias"]
  hidden = hidden / (1 + np.exp(-hidden))  # SiLU
  gate = 1 / (1 + np.exp(-(hidden @ p["fc2"]["kernel"][0, 0] + p["fc2"]["bias"])))
  # A handful of float32 products of O(1) values: 1e-5 relative.
  np.testing.assert_allclose(_jit(se.apply, v, x), np.asarray(x) * gate[:, None, None, :],
                             rtol=1e-5,
                             atol=1e-5 * float(np.abs(x).max()))


def test_convnext_block_is_the_identity_at_zero_layer_scale():
  block = blocks.ConvNeXtBlock(conv=functools.partial(layers.Conv, use_bias=True),
                               norm=functools.partial(nn.LayerNorm, epsilon=1e-6),
                               layer_scale_init=0.0, drop_path_rate=0.5)
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 4))
  v = _jit(lambda x: block.init(jax.random.key(0), x, train=False), x)
  assert v["params"]["depthwise"]["kernel"].shape == (7, 7, 1, 4)
  assert v["params"]["pwconv1"]["kernel"].shape == (1, 1, 4, 16)
  np.testing.assert_array_equal(_jit(lambda v, x: block.apply(v, x, train=False), v, x), x)
  with pytest.raises(Exception, match="dropout"):
    jax.eval_shape(lambda: block.apply(v, x, train=True))  # DropPath needs the 'dropout' rng.


def test_grouped_bottleneck_widths():
  x = jnp.zeros((1, 8, 8, 64))
  params, out = _shapes(blocks.GroupedBottleneck(64, CONV, BN, strides=2, groups=32,
                                                 base_width=4), x, train=False)
  assert out == (1, 4, 4, 256)
  assert params["conv2"]["kernel"] == (3, 3, 4, 128)  # 32 groups of 4 channels.
  params, _ = _shapes(blocks.GroupedBottleneck(64, CONV, BN, base_width=128), x, train=False)
  assert params["conv1"]["kernel"] == (1, 1, 64, 128)  # Wide: twice ResNet-50's 64.


def test_mbconv_residual_and_expansion():
  x = jnp.zeros((1, 8, 8, 16))
  params, out = _shapes(blocks.MBConv(16, 6, CONV, BN, kernel_size=5), x, train=False)
  assert out == x.shape and "drop_path" not in params  # No parameters in DropPath.
  assert params["expand"]["conv"]["kernel"] == (1, 1, 16, 96)
  assert params["depthwise"]["conv"]["kernel"] == (5, 5, 1, 96)
  assert params["se"]["fc1"]["kernel"] == (1, 1, 96, 4)  # 16 // 4 squeeze units.
  params, out = _shapes(blocks.MBConv(24, 1, CONV, BN, strides=2), x, train=False)
  assert out == (1, 4, 4, 24) and "expand" not in params


def test_dense_block_and_transition():
  x = jnp.zeros((1, 8, 8, 16))
  params, out = _shapes(blocks.DenseBlock(3, 8, CONV, BN, bn_size=2), x, train=False)
  assert out == (1, 8, 8, 16 + 3 * 8)
  assert params["layer3"]["conv1"]["kernel"] == (1, 1, 32, 16)  # Sees 16 + 2 * 8 channels.
  _, out = _shapes(blocks.Transition(20, CONV, BN), jnp.zeros((1, 8, 8, 40)), train=False)
  assert out == (1, 4, 4, 20)
  _, out = _shapes(blocks.Transition(20, CONV, BN, downsample=layers.BlurPool),
                   jnp.zeros((1, 7, 7, 40)), train=False)
  assert out == (1, 4, 4, 20)  # ceil(7 / 2) with an antialiased downsampling.


def test_wide_basic_block_shortcut_only_when_the_shape_changes():
  x = jnp.zeros((1, 8, 8, 16))
  params, out = _shapes(blocks.WideBasicBlock(16, CONV, BN), x, train=False)
  assert out == x.shape and "shortcut_conv" not in params
  params, out = _shapes(blocks.WideBasicBlock(32, CONV, BN, strides=2), x, train=False)
  assert out == (1, 4, 4, 32) and params["shortcut_conv"]["kernel"] == (1, 1, 16, 32)
  assert "bias" not in params["shortcut_conv"]
