"""Every zoo model and block through ``cnnjax.nnx``: equal to linen with the linen variables copied in."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import cnnjax.nnx as cnnx
from cnnjax import blocks, layers, models, testing
from nnx_common import assert_same, nnx_and_linen, random
from testlib import SMALL_MODELS, compile_fast, init_variables, model_example

KEY = jax.random.key(0)


# Every model at reduced depth and width (the equivalence does not depend on the size); the
# variables are drawn with NumPy and handed to both forms, so no initialiser is compiled.
@pytest.mark.parametrize("name", [n for n in models.names() if not n.startswith("test_")])
def test_model_equals_linen_in_both_modes(name):
  fields = SMALL_MODELS[name]
  linen = models.create(name, **fields)
  x = model_example(name)
  variables = init_variables(linen, x, train=False)
  model = cnnx.models.create(name, rngs=nnx.Rngs(5), variables=variables, **fields)
  assert model.module == linen
  y_train, stats, y_eval, l_train, l_stats, l_eval = nnx_and_linen(model, variables, x, KEY)
  assert_same((y_train, stats, y_eval), (l_train, l_stats, l_eval))
  if "batch_stats" in variables:  # the training call did move the statistics
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(stats), jax.tree.leaves(variables["batch_stats"])))
    assert all(isinstance(v, nnx.BatchStat) for v in jax.tree.leaves(
        nnx.state(model, nnx.BatchStat), is_leaf=lambda v: isinstance(v, nnx.Variable)))


def test_variables_given_at_creation_replace_the_initialisers():
  fields = SMALL_MODELS["resnet18_cifar"]
  linen = models.create("resnet18_cifar", **fields)
  x = model_example("resnet18_cifar")
  variables = init_variables(linen, x, train=False)
  model = cnnx.models.create("resnet18_cifar", rngs=nnx.Rngs(0), variables=variables, **fields)
  assert_same(cnnx.to_linen(model), variables)
  with pytest.raises(ValueError, match=r"lack the collections \['batch_stats'\]"):
    cnnx.models.create("resnet18_cifar", rngs=nnx.Rngs(0), variables={"params": variables["params"]},
                       **fields)
  params = dict(variables["params"])
  params.pop("head")
  with pytest.raises(ValueError, match="params/head/bias is missing"):
    cnnx.models.create("resnet18_cifar", rngs=nnx.Rngs(0), **fields,
                       variables={"params": params, "batch_stats": variables["batch_stats"]})
  with pytest.raises(ValueError, match=r"from_linen: \S+ has shape \(.*\), the model needs \("):
    cnnx.models.create("resnet18_cifar", rngs=nnx.Rngs(0), **{**fields, "num_filters": 4},
                       variables=init_variables(models.create("resnet18_cifar", **{
                           **fields, "num_filters": 8}), x, train=False))


def test_model_fields_names_and_pre_logits_match_linen():
  with pytest.raises(TypeError, match=r"'widht'.*valid fields"):
    cnnx.models.create("digits_cnn", widht=4, rngs=nnx.Rngs(0))
  assert cnnx.models.names() == models.names()
  model = cnnx.models.create("digits_cnn", width=4, rngs=nnx.Rngs(0), use_running_average=True)
  assert model.head.kernel.shape == (16, 10) and model.conv1.conv.kernel.shape == (3, 3, 1, 4)
  x = model_example("digits_cnn")
  y, inter = model.intermediates(x)
  _, ref = model.module.apply(cnnx.to_linen(model), x, train=False, mutable=["intermediates"])
  assert_same((y, inter["pre_logits"]), (model(x), ref["intermediates"]["pre_logits"]))
  with pytest.raises(ValueError, match=r"DigitsCNN.*channels-first \(NCHW"):
    model(jnp.zeros((2, 1, 8, 8)))


BLOCKS = {
    "ConvNormAct": (blocks.ConvNormAct(4, 3, conv=layers.Conv, norm=layers.BatchNorm, strides=2,
                                       downsample=functools.partial(layers.BlurPool)), (2, 8, 8, 3)),
    "BasicBlock": (blocks.BasicBlock(4, conv=layers.Conv, norm=layers.BatchNorm, strides=2), (2, 8, 8, 3)),
    "Bottleneck": (blocks.Bottleneck(2, conv=layers.Conv, norm=layers.BatchNorm), (2, 8, 8, 3)),
    "InceptionBlock": (blocks.InceptionBlock(2, 2, 2, 2, 2, 2, conv=layers.Conv, norm=layers.BatchNorm),
                       (2, 8, 8, 3)),
    "InvertedResidual": (blocks.InvertedResidual(3, 2.0, conv=layers.Conv, norm=layers.BatchNorm),
                         (2, 8, 8, 3)),
    "SeparableBlock": (blocks.SeparableBlock(4, conv=layers.Conv, norm=layers.BatchNorm), (2, 8, 8, 3)),
    "AdaptiveAvgPool": (blocks.AdaptiveAvgPool((2, 2)), (2, 8, 8, 3)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_equals_linen_in_both_modes(name):
  linen, shape = BLOCKS[name]
  x = random(shape)
  model = cnnx.FromLinen(linen, jax.ShapeDtypeStruct(shape, jnp.float32), rngs=nnx.Rngs(5))
  kw = {"train": False} if model.takes_train else {}
  variables = compile_fast(lambda x: linen.init(jax.random.key(3), x, **kw), x)(x)
  out = nnx_and_linen(model, variables, x, KEY)
  assert_same(out[:3], out[3:])


def test_torch_weights_and_checkpoints_load_through_from_linen():
  # A linen variables dict is what load_torch_state_dict and checkpoints give.
  fields = SMALL_MODELS["resnet18_cifar"]
  model = cnnx.models.create("resnet18_cifar", **fields, rngs=nnx.Rngs(0), use_running_average=True)
  linen = models.create("resnet18_cifar", **fields)
  variables = init_variables(linen, model_example("resnet18_cifar"), train=False)
  cnnx.from_linen(model, variables)
  np.testing.assert_array_equal(model.stem.conv.kernel.get_value(), variables["params"]["stem"]["conv"]["kernel"])
  assert jax.tree.structure(cnnx.to_linen(model)) == jax.tree.structure(variables)


def test_testing_toolkit_works_on_nnx_modules():
  # The assertions take functions: an NNX module in eval mode is one.
  model = cnnx.models.create("resnet18_cifar", num_filters=4, padding="CIRCULAR", downsample="aps",
                             rngs=nnx.Rngs(0), use_running_average=True)
  x = random((2, 16, 16, 3))
  forward = nnx.jit(lambda model, x: model(x))  # one compilation for every shifted input
  fn = functools.partial(forward, model)
  # Logits of order 1 from a float32 network: a relative tolerance of a few ulps per layer.
  scale = float(jnp.max(jnp.abs(fn(x))))
  for shift in [(1, 3), (5, 2)]:
    testing.assert_shift_invariant(fn, x, shift, atol=1e-5 * scale, rtol=1e-5)
