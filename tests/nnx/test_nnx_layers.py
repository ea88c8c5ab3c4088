"""Every ``cnnjax.nnx`` layer equals its linen layer with the linen variables copied in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cnnjax.nnx as cnnx
from cnnjax import layers
from nnx_common import assert_same, nnx_and_linen, random
from testlib import compile_fast

KEY = jax.random.key(0)
X = (2, 8, 8, 3)

# name: (NNX layer, linen layer, input shape)
LAYERS = {
    "Conv": (lambda r: cnnx.Conv(3, 4, (3, 3), strides=2, rngs=r), layers.Conv(4, (3, 3), strides=2), X),
    "ConvTranspose": (lambda r: cnnx.ConvTranspose(3, 4, (3, 3), strides=2, rngs=r),
                      layers.ConvTranspose(4, (3, 3), strides=2), X),
    "DepthwiseConv": (lambda r: cnnx.DepthwiseConv(3, (3, 3), 2, rngs=r), layers.DepthwiseConv((3, 3), 2), X),
    "SeparableConv": (lambda r: cnnx.SeparableConv(3, 4, (3, 3), rngs=r), layers.SeparableConv(4, (3, 3)), X),
    "DeformableConv2D": (lambda r: cnnx.DeformableConv2D(3, 4, 3, padding="VALID", rngs=r),
                         layers.DeformableConv2D(4, 3, padding="VALID"), X),
    "MaxPool": (lambda r: cnnx.MaxPool((2, 2), (2, 2)), layers.MaxPool((2, 2), (2, 2)), X),
    "AvgPool": (lambda r: cnnx.AvgPool((3, 3), padding="SAME"), layers.AvgPool((3, 3), padding="SAME"), X),
    "GlobalAvgPool": (lambda r: cnnx.GlobalAvgPool(), layers.GlobalAvgPool(), X),
    "GlobalMaxPool": (lambda r: cnnx.GlobalMaxPool(), layers.GlobalMaxPool(), X),
    "BlurPool": (lambda r: cnnx.BlurPool(), layers.BlurPool(), X),
    "MaxBlurPool": (lambda r: cnnx.MaxBlurPool(), layers.MaxBlurPool(), X),
    "PolyphaseDownsample": (lambda r: cnnx.PolyphaseDownsample(), layers.PolyphaseDownsample(), X),
    "BatchNorm": (lambda r: cnnx.BatchNorm(3, momentum=0.9, rngs=r), layers.BatchNorm(momentum=0.9), X),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_equals_linen_in_both_modes(name):
  make, linen, shape = LAYERS[name]
  model = make(nnx.Rngs(7))
  assert type(model.module) is type(linen) and model.module == linen
  x = random(shape)
  variables = {}
  if jax.tree.leaves(cnnx.to_linen(model)):
    kw = {"train": False} if model.takes_train else {}
    variables = compile_fast(lambda x: linen.init(jax.random.key(3), x, **kw), x)(x)
  if "batch_stats" in variables:  # non-trivial statistics to start from
    variables = {**variables, "batch_stats": jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])}
  # Same names and shapes on both sides, then the NNX values are the linen ones.
  assert jax.tree.map(jnp.shape, cnnx.to_linen(model)) == jax.tree.map(jnp.shape, variables)
  y_train, stats, y_eval, l_train, l_stats, l_eval = nnx_and_linen(model, variables, x, KEY)
  assert_same(cnnx.to_linen(model), variables)
  assert_same((y_train, stats, y_eval), (l_train, l_stats, l_eval))


def test_batchnorm_modes_statistics_and_bf16():
  bn = cnnx.BatchNorm(3, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
  assert isinstance(bn.mean, nnx.BatchStat) and isinstance(bn.scale, nnx.Param)
  assert bn.mean.get_value().dtype == jnp.float32 and bn.scale.get_value().dtype == jnp.float32
  x = random(X, dtype=jnp.bfloat16) * 2 + 1
  assert not bn.use_running_average  # NNX modules start in training mode
  y = bn(x)
  assert y.dtype == jnp.bfloat16
  mean = np.asarray(bn.mean.get_value())
  # One update from zeros with momentum 0.99: 0.01 * batch mean (~1), float32 moments of bf16 data.
  np.testing.assert_allclose(mean, 0.01 * np.asarray(x, np.float32).mean((0, 1, 2)), rtol=1e-5, atol=1e-7)
  bn.eval()
  assert bn.use_running_average
  bn(x)
  np.testing.assert_array_equal(bn.mean.get_value(), mean)  # eval leaves the statistics alone
  trained = nnx.view(bn, use_running_average=False)
  assert not trained.use_running_average and bn.use_running_average
  bn(x, use_running_average=False)
  assert not np.array_equal(bn.mean.get_value(), mean)


def test_layers_check_their_input_at_construction_and_call():
  with pytest.raises(ValueError, match="in_features must be a positive int"):
    cnnx.Conv(0, 4, (3, 3), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="kernel_size must be a tuple"):
    cnnx.Conv(3, 4, (0, 3), rngs=nnx.Rngs(0))
  conv = cnnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"channels-first \(NCHW"):
    conv(jnp.zeros((2, 3, 16, 16)))
  with pytest.raises(ValueError, match=r"MaxPool.*channels-first \(NCHW"):
    cnnx.MaxPool((2, 2))(jnp.zeros((2, 3, 16, 16)))


def test_weights_round_trip_and_mismatches_are_named():
  model = cnnx.SeparableConv(3, 4, (3, 3), rngs=nnx.Rngs(0))
  variables = cnnx.to_linen(model)
  assert set(variables["params"]) == {"depthwise", "pointwise"}
  other = cnnx.SeparableConv(3, 4, (3, 3), rngs=nnx.Rngs(1))
  cnnx.from_linen(other, variables)
  assert_same(cnnx.to_linen(other), variables)
  bad = jax.tree.map(lambda a: a, variables)
  bad["params"]["pointwise"]["kernel"] = jnp.zeros((1, 1, 3, 5))
  with pytest.raises(ValueError, match=r"params/pointwise/kernel has shape \(1, 1, 3, 5\).*\(1, 1, 3, 4\)"):
    cnnx.from_linen(other, bad)
  with pytest.raises(ValueError, match="have no NNX counterpart"):
    cnnx.from_linen(other, {"cache": {}})


def test_nnx_jit_and_grad_see_plain_nnx_state():
  model = cnnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
  x = random(X)

  @nnx.jit
  def loss(model, x):
    return jnp.mean(model(x) ** 2)

  grads = nnx.grad(loss)(model, x)
  assert set(grads) == {"kernel", "bias"}
  ref = jax.grad(lambda v: jnp.mean(layers.Conv(4, (3, 3)).apply(v, x) ** 2))(cnnx.to_linen(model))
  assert_same({"bias": grads["bias"].get_value(), "kernel": grads["kernel"].get_value()}, ref["params"])

