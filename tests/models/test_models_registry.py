"""The registry: create, names, register, field validation; model input checks."""

import functools

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models
from cnnjax.models import registry

EXPECTED = {"lenet5", "digits_cnn", "alexnet", "vgg11", "vgg16", "vgg11_bn", "vgg16_bn",
            "resnet18", "resnet34", "resnet50", "resnet18_cifar", "resnet34_cifar",
            "resnet50_cifar", "googlenet", "googlenet_small", "mobilenet_v2", "textcnn"}


def test_names_cover_the_zoo():
  assert EXPECTED <= set(models.names())
  assert models.names() == sorted(models.names())


def test_create_passes_fields():
  model = models.create("resnet18", num_classes=7, downsample="blur")
  assert isinstance(model, models.ResNet)
  assert (model.num_classes, model.downsample, tuple(model.stage_sizes)) == (7, "blur", (2, 2, 2, 2))


def test_unknown_name_lists_valid_ones():
  with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
    models.create("resnet19")


def test_unknown_field_is_a_type_error_naming_valid_fields():
  with pytest.raises(TypeError, match=r"'num_clases'.*valid fields:.*num_classes"):
    models.create("lenet5", num_clases=10)


def test_register_refuses_duplicates_and_non_modules():
  with pytest.raises(ValueError, match="already registered"):
    models.register("lenet5")(models.LeNet5)
  with pytest.raises(TypeError, match="flax.linen.Module"):
    models.register("test_not_a_module")(lambda: None)
  assert "test_not_a_module" not in models.names()


@pytest.fixture
def registered_lenet5_same():
  """Registers ``test_lenet5_same`` for one test and removes it after: the registry stays as imported."""
  name = "test_lenet5_same"
  models.register(name, input_shape=(8, 8, 1))(functools.partial(models.LeNet5, padding="SAME"))
  yield name
  registry.unregister(name)


def test_register_a_new_partial(registered_lenet5_same):
  name = registered_lenet5_same
  spec = models.spec(name)
  assert spec.module_class is models.LeNet5 and spec.input_shape == (8, 8, 1)
  assert models.create(name).padding == "SAME"


def test_unregister_removes_and_refuses_unknown_names():
  models.register("test_unregistered", input_shape=(8, 8, 1))(models.LeNet5)
  assert registry.unregister("test_unregistered").module_class is models.LeNet5
  assert "test_unregistered" not in models.names()
  with pytest.raises(ValueError, match="unknown model 'test_unregistered'"):
    registry.unregister("test_unregistered")


@pytest.mark.parametrize("name", ["lenet5", "resnet18_cifar", "mobilenet_v2", "vgg11",
                                  "googlenet_small", "alexnet", "digits_cnn"])
def test_nchw_input_is_rejected_with_a_hint(name):
  model = models.create(name)
  with pytest.raises(ValueError, match="NCHW"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 3, 64, 64)), train=False))


def test_input_channels_are_checked():
  model = models.create("lenet5", input_channels=1)
  with pytest.raises(ValueError, match="1 channels.*got shape \\(2, 32, 32, 3\\)"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 32, 32, 3))))
  with pytest.raises(ValueError, match="rank 4"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((32, 32, 1))))
  with pytest.raises(TypeError, match="floating"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 32, 32, 1), jnp.int32)))


def test_textcnn_input_checks():
  model = models.create("textcnn")
  with pytest.raises(TypeError, match="integer token ids"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 16))))
  with pytest.raises(ValueError, match=r"\(N, T\)"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 16, 3), jnp.int32)))
  with pytest.raises(ValueError, match="at least 4 tokens"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 3), jnp.int32)))


def test_alexnet_minimum_size_and_bad_downsample():
  with pytest.raises(ValueError, match="at least 63x63"):
    jax.eval_shape(lambda: models.create("alexnet").init(jax.random.key(0), jnp.ones((1, 32, 32, 3))))
  with pytest.raises(ValueError, match="downsample must be one of"):
    jax.eval_shape(lambda: models.create("lenet5", downsample="avg").init(
        jax.random.key(0), jnp.ones((1, 32, 32, 3))))


def test_every_model_has_a_head_and_pre_logits():
  for name in ["lenet5", "digits_cnn", "textcnn", "resnet18_cifar"]:
    spec = models.spec(name)
    model = models.create(name)
    x = jnp.ones((2, *spec.input_shape), spec.input_dtype)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert "head" in variables["params"]
    head_in = variables["params"]["head"]["kernel"].shape[0]
    _, state = jax.eval_shape(lambda v: model.apply(v, x, train=False, mutable=["intermediates"]),
                              variables)
    (feats,) = state["intermediates"]["pre_logits"]
    assert feats.shape == (2, head_in)


def test_lenet5_flattens_400_features_on_32x32():
  model = models.create("lenet5")
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((1, 32, 32, 3))))
  assert variables["params"]["fc1"]["kernel"].shape == (5 * 5 * 16, 120) == (400, 120)
  assert variables["params"]["fc2"]["kernel"].shape == (120, 84)
  assert variables["params"]["head"]["kernel"].shape == (84, 10)


def test_lenet5_on_8x8_needs_same_padding():
  x = jnp.ones((1, 8, 8, 1))
  with pytest.raises(ValueError, match="kernel larger than the padded input"):
    jax.eval_shape(lambda: models.create("lenet5").init(jax.random.key(0), x))
  variables = jax.eval_shape(lambda: models.create("lenet5", padding="SAME").init(jax.random.key(0), x))
  assert variables["params"]["fc1"]["kernel"].shape == (2 * 2 * 16, 120)


def test_digits_cnn_is_small():
  x = jnp.ones((1, 8, 8, 1))
  variables = jax.eval_shape(lambda: models.create("digits_cnn").init(jax.random.key(0), x, train=False))
  n = sum(v.size for v in jax.tree.leaves(variables["params"]))
  assert 50_000 < n < 150_000
