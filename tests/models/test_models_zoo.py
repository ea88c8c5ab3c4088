"""ConvNeXt, ResNeXt, Wide ResNets, EfficientNet, DenseNet: sizes, dtypes, training under pmap.

Full-size networks are only traced (``jax.eval_shape``: parameter counts, at
no compute cost); everything that runs uses the same architectures at
reduced depth and width, reached through the models' fields, so that the
whole file compiles in seconds on CPU.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax import models
from cnnjax.train.parallel import Parallel
from cnnjax.train.state import TrainState
from cnnjax.train.steps import AXIS, train_step
from testlib import SMALL_ZOO, compile_fast, init_variables

#: Each family at reduced size: (registered name, fields).
SMALL = SMALL_ZOO


def _count(name, shape, **fields):
  model = models.create(name, **fields)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return sum(v.size for v in jax.tree.leaves(variables["params"])), variables


@pytest.mark.parametrize("name,count", [
    ("convnext_tiny", 28_589_128),
    ("resnext50_32x4d", 25_028_904),
    ("wide_resnet50_2", 68_883_240),
    ("efficientnet_b0", 5_288_548),
    ("densenet121", 7_978_856),
])
def test_torchvision_parameter_counts(name, count):
  n, variables = _count(name, (1, 224, 224, 3))
  assert n == count
  assert variables["params"]["head"]["kernel"].shape[-1] == 1000


def test_convnext_kernel_size_sets_every_depthwise_kernel():
  # ConvNeXt-T's blocks hold 3*96 + 3*192 + 9*384 + 3*768 = 6,624 depthwise channels, each
  # with a k x k kernel: 3x3 instead of 7x7 removes (49 - 9) * 6,624 weights.
  n, variables = _count("convnext_tiny", (1, 224, 224, 3), kernel_size=3)
  assert n == 28_589_128 - 40 * 6_624
  assert variables["params"]["stage4_block2"]["depthwise"]["kernel"].shape == (3, 3, 1, 768)


def test_wrn28_10_parameter_count():
  # Convolutions 36,454,832 + 8,976 BatchNorm channels x 2 + head 640 x 10 + 10.
  n, variables = _count("wrn28_10", (1, 32, 32, 3))
  assert n == 36_454_832 + 2 * 8_976 + 6_410 == 36_479_194
  assert variables["params"]["stage3_block3"]["conv2"]["kernel"].shape == (3, 3, 640, 640)
  with pytest.raises(ValueError, match=r"depth must be 6 n \+ 4.*got 27"):
    _count("wrn28_10", (1, 32, 32, 3), depth=27)


@pytest.mark.parametrize("name", list(SMALL))
def test_init_forward_backward_and_training_under_pmap(name):
  """Float32 and bfloat16 training steps (forward, backward, update) on two devices.

  One initialisation serves both dtypes (``param_dtype`` stays float32), so
  their first losses, on the same batch and dropout keys, are comparable.
  """
  fields = dict(SMALL[name], num_classes=3)
  if "axis_name" in models.spec(name).fields():
    fields["axis_name"] = AXIS  # BatchNorm statistics over both devices.
  model = models.create(name, **fields)
  x = jnp.zeros((1, 32, 32, 3))
  variables = init_variables(model, x, train=False)  # NumPy draws: no initialiser compiled
  _, sown = jax.eval_shape(lambda v: model.apply(v, x, train=False, mutable=["intermediates"]),
                           variables)
  head = variables["params"]["head"]["kernel"]
  assert sown["intermediates"]["pre_logits"][0].shape == (1, head.shape[0])
  parallel = Parallel("pmap", jax.local_devices()[:2])
  rng = np.random.default_rng(0)
  batch = parallel.shard_batch({
      "image": rng.normal(size=(4, 32, 32, 3)).astype(np.float32),
      "label": np.array([0, 1, 2, 1], np.int32), "mask": np.ones(4, bool)})
  first = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    typed = models.create(name, dtype=dtype, **fields)
    state = TrainState.create(apply_fn=typed.apply, params=variables["params"],
                              tx=optax.adam(3e-3), batch_stats=variables.get("batch_stats", {}),
                              rng=jax.random.key_data(jax.random.key(1)))
    state = parallel.put_state(state)
    step = compile_fast(parallel.train_step(functools.partial(train_step, num_classes=3)),
                     state, batch)
    losses = []
    for _ in range(3):  # The same batch three times: the loss must go down.
      state, metrics = step(state, batch)
      metrics = parallel.host_metrics(metrics)
      losses.append(float(metrics["loss_sum"]) / float(metrics["count"]))
      assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0
    assert np.isfinite(losses).all() and losses[-1] < losses[0], (dtype, losses)
    final = parallel.host_state(state)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(final.params))
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(final.batch_stats))
    first[dtype] = losses[0]
  # bf16 keeps ~3 significant digits per layer: its loss tracks float32's loosely.
  assert abs(first[jnp.bfloat16] - first[jnp.float32]) < 0.1 * first[jnp.float32]


@pytest.mark.parametrize("mode", ["blur", "aps"])
@pytest.mark.parametrize("name", ["convnext_tiny", "efficientnet_b0", "densenet121", "wrn28_10",
                                  "resnext50_32x4d"])
def test_antialiased_variants_keep_shapes_and_parameters(name, mode):
  x = jnp.zeros((2, 32, 32, 3))
  plain = models.create(name, **SMALL[name])
  model = models.create(name, downsample=mode, **SMALL[name])
  kw = {"train": False, "capture_intermediates": True, "mutable": ["intermediates"]}
  v = jax.eval_shape(lambda: plain.init(jax.random.key(0), x, train=False))
  va = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  assert jax.tree.map(lambda a: a.shape, v) == jax.tree.map(lambda a: a.shape, va)
  _, inter = jax.eval_shape(lambda v: plain.apply(v, x, **kw), v)
  _, inter_a = jax.eval_shape(lambda v: model.apply(v, x, **kw), va)
  assert (inter_a["intermediates"]["pre_logits"][0].shape
          == inter["intermediates"]["pre_logits"][0].shape)
  paths = [jax.tree_util.keystr(p)
           for p, _ in jax.tree_util.tree_leaves_with_path(inter_a["intermediates"])]
  assert any("downsample" in p for p in paths)


def test_stochastic_depth_rates_rise_linearly():
  # torchvision: block k of K drops with probability rate * k / (K - 1) (ConvNeXt)
  # and rate * k / K (EfficientNet); the first block never drops.
  model = models.create("convnext_tiny", depths=(1, 1, 2, 1), dims=(8, 8, 8, 8),
                        drop_path_rate=0.4)
  x = jnp.zeros((1, 32, 32, 3))
  rates = []

  def record(next_fun, args, kwargs, context):
    if type(context.module).__name__ == "DropPath":
      rates.append(context.module.rate)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  np.testing.assert_allclose(rates, [0.0, 0.1, 0.2, 0.3, 0.4], rtol=1e-6)


@pytest.mark.parametrize("name", list(SMALL))
def test_channels_first_input_is_rejected_with_a_hint(name):
  model = models.create(name, **SMALL[name])
  with pytest.raises(ValueError, match="NCHW"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.ones((2, 3, 32, 32)), train=False))


def test_bad_fields_are_value_errors():
  x = jnp.ones((1, 32, 32, 3))
  with pytest.raises(ValueError, match=r"depths and dims must have the same length"):
    jax.eval_shape(lambda: models.create("convnext_tiny", depths=(1, 1, 1)).init(
        jax.random.key(0), x, train=False))
  with pytest.raises(ValueError, match="width_multiplier and depth_multiplier must be positive"):
    jax.eval_shape(lambda: models.create("efficientnet_b0", depth_multiplier=0).init(
        jax.random.key(0), x, train=False))
