"""Activation maps of named layers and feature extraction."""

import jax
import jax.numpy as jnp
import matplotlib.image
import numpy as np
import pytest

from cnnjax import inspect as ci
from cnnjax import models, ops
from testlib import assert_close


@pytest.fixture(scope="module")
def tiny():
  model = models.create("digits_cnn", num_classes=3, width=4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(7, 8, 8, 1)), jnp.float32)
  variables = model.init(jax.random.key(0), x, train=False)
  return model, variables, x


def test_layer_names_in_call_order(tiny):
  names = ci.layer_names(*tiny)
  assert names.index("conv1/conv") < names.index("conv1") < names.index("conv2/conv")
  assert names.index("conv3") < names.index("global_pool") < names.index("head")
  assert names[-1] == "pre_logits"


def test_activations_are_the_named_layers_outputs(tiny):
  model, variables, x = tiny
  maps = ci.activations(model, variables, x, layers=["conv1/conv", "conv1", "pool", "pre_logits"])
  kernel = variables["params"]["conv1"]["conv"]["kernel"]
  # The same convolution in two programs, relative to the largest activation.
  assert_close(maps["conv1/conv"], ops.conv(x, kernel, padding="SAME"), rtol=1e-5)
  assert maps["conv1"].shape == (7, 8, 8, 4) and maps["conv1"].min() >= 0  # After the ReLU.
  assert maps["pool"].shape == (7, 4, 4, 8)
  logits = model.apply(variables, x, train=False)
  head = variables["params"]["head"]
  # The head's matmul in another order, relative to the largest logit.
  assert_close(maps["pre_logits"] @ head["kernel"] + head["bias"], logits, rtol=1e-5)


def test_unknown_layer_lists_the_valid_names(tiny):
  with pytest.raises(ValueError, match=r"no layer\(s\) \['conv9'\].*conv1/conv.*pre_logits"):
    ci.activations(*tiny, layers=["conv9"])


def test_images_must_be_batched_nhwc(tiny):
  model, variables, x = tiny
  with pytest.raises(ValueError, match=r"\(N, H, W, C\).*x\[None\]"):
    ci.activations(model, variables, x[0], layers=["conv1"])


def test_extract_features_batches_match_one_pass(tiny):
  model, variables, x = tiny
  whole = ci.extract_features(model, variables, x, batch_size=64)
  batched = ci.extract_features(model, variables, np.asarray(x), batch_size=3)  # 3 + 3 + 1 (padded).
  assert whole.shape == (7, 16) and whole.dtype == np.float32
  # Other batch sizes compile other programs (summation orders): relative to the largest feature.
  assert_close(batched, whole, rtol=1e-5)
  flat = ci.extract_features(model, variables, x, layer="conv3", batch_size=4)
  assert flat.shape == (7, 4 * 4 * 16)
  with pytest.raises(ValueError, match="batch_size must be positive"):
    ci.extract_features(model, variables, x, batch_size=0)


def test_plot_activations(tiny, tmp_path):
  model, variables, x = tiny
  maps = ci.activations(model, variables, x[:1], layers=["conv2"])["conv2"]
  path = ci.plot_activations(maps, tmp_path / "a.png")
  assert matplotlib.image.imread(path).shape[0] > 100
  grid = ci.activation_grid(maps, ncols=4)
  assert grid.shape == (2 * 9 + 1, 4 * 9 + 1, 1)
  dead = np.zeros((5, 5, 2), np.float32)
  dead[..., 1] = np.arange(25).reshape(5, 5)
  tiles = ci.activation_grid(dead, ncols=2)
  np.testing.assert_array_equal(tiles[1:6, 1:6, 0], 0.5)  # A dead channel is uniform grey.
  assert tiles[1:6, 7:12, 0].min() == 0 and tiles[1:6, 7:12, 0].max() == 1
  with pytest.raises(ValueError, match="no spatial map"):
    ci.plot_activations(np.zeros((1, 16)), tmp_path / "b.png")
