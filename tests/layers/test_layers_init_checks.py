"""Every layer checks its input at ``init`` as at ``apply``; BatchNorm takes Flax's mode spelling."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import layers

KEY = jax.random.key(0)

LAYERS = {
    "Conv": lambda: layers.Conv(8, (3, 3)),
    "ConvTranspose": lambda: layers.ConvTranspose(8, (3, 3)),
    "DepthwiseConv": lambda: layers.DepthwiseConv((3, 3)),
    "SeparableConv": lambda: layers.SeparableConv(8, (3, 3)),
    "DeformableConv2D": lambda: layers.DeformableConv2D(8, (3, 3)),
    "MaxPool": lambda: layers.MaxPool((2, 2)),
    "AvgPool": lambda: layers.AvgPool((2, 2)),
    "GlobalAvgPool": lambda: layers.GlobalAvgPool(),
    "GlobalMaxPool": lambda: layers.GlobalMaxPool(),
    "BlurPool": lambda: layers.BlurPool(),
    "MaxBlurPool": lambda: layers.MaxBlurPool(),
    "PolyphaseDownsample": lambda: layers.PolyphaseDownsample(),
    "BatchNorm": lambda: layers.BatchNorm(use_running_average=True),
}


def _init_shapes(layer, x):
  # Shapes only: the check runs while tracing, nothing is computed.
  return jax.eval_shape(layer.init, KEY, x)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_init_refuses_a_channels_first_batch(name):
  nchw = jnp.zeros((2, 3, 16, 16))
  with pytest.raises(ValueError, match=r"%s.*\(2, 3, 16, 16\).*channels-first \(NCHW.*moveaxis" % name):
    _init_shapes(LAYERS[name](), nchw)


@pytest.mark.parametrize("name", sorted(LAYERS))
@pytest.mark.parametrize("shape", [(2, 4, 4, 64), (2, 16, 16, 3), (2, 4, 4, 4), (2, 2, 8, 2)])
def test_init_accepts_small_channels_last_maps(name, shape):
  # Small feature maps with few rows (late stages of a network) are legitimate NHWC.
  _init_shapes(LAYERS[name](), jnp.zeros(shape))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_init_refuses_wrong_rank_and_integers(name):
  with pytest.raises(ValueError, match=r"\(48,\)"):
    _init_shapes(LAYERS[name](), jnp.zeros((48,)))
  with pytest.raises(TypeError, match="floating"):
    _init_shapes(LAYERS[name](), jnp.zeros((2, 8, 8, 3), jnp.int32))


def _flax_style_step(cls, x, **kw):
  """Code as written for ``flax.linen.BatchNorm``: mode as a field and as a call argument."""
  train_bn = cls(use_running_average=False, momentum=0.9, **kw)
  variables = train_bn.init(KEY, x)
  y_train, updates = train_bn.apply(variables, x, mutable=["batch_stats"])
  eval_bn = cls(momentum=0.9, **kw)
  y_eval = eval_bn.apply({**variables, **updates}, x, use_running_average=True)
  return y_train, updates["batch_stats"], y_eval


def test_batchnorm_runs_code_written_for_flax():
  x = jax.random.normal(KEY, (8, 4, 4, 3)) * 3.0 + 1.0
  ours = _flax_style_step(layers.BatchNorm, x)
  theirs = _flax_style_step(nn.BatchNorm, x)
  # Same function; the two compute the variance by different float32 formulas
  # (E[x^2]-E[x]^2 vs E[(x-m)^2]) over 128 values of magnitude ~4: a few ulps
  # relative to the values compared.
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(b))))


def test_batchnorm_mode_spellings_agree_and_conflicts_are_refused():
  x = jax.random.normal(KEY, (8, 4, 4, 3))
  variables = layers.BatchNorm().init(KEY, x, train=False)
  ref = layers.BatchNorm().apply(variables, x, train=False)
  for bn, kw in [(layers.BatchNorm(use_running_average=True), {}),
                 (layers.BatchNorm(), {"use_running_average": True}),
                 (layers.BatchNorm(use_running_average=True), {"train": False})]:
    np.testing.assert_array_equal(bn.apply(variables, x, **kw), ref)
  with pytest.raises(ValueError, match="both as a field.*and as a call argument"):
    layers.BatchNorm(use_running_average=True).apply(variables, x, use_running_average=False)
  with pytest.raises(ValueError, match="train=True contradicts use_running_average=True"):
    layers.BatchNorm().apply(variables, x, train=True, use_running_average=True)
  with pytest.raises(TypeError, match="needs its mode"):
    layers.BatchNorm().apply(variables, x)
