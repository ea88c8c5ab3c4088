"""Every registered model: forward shape and finiteness, float32 and bfloat16, train and eval.

Numbers are computed at reduced depth and width (``testlib.SMALL_MODELS``:
the same stems, blocks, pools and heads through each model's own fields), so
that every program compiles in seconds on CPU; each model's variables are
drawn once with NumPy (``testlib.init_variables``, batch 2) and the two dtypes
share them (``param_dtype`` is float32 in both). Full-size models are traced (``jax.eval_shape``): shapes and
dtypes at no compute cost. Full-size numbers are compared with torchvision in
the weight-import tests.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models
from testlib import SMALL_MODELS, SMALL_ZOO, compile_fast, init_variables, model_example


def _names():
  return [n for n in models.names() if not n.startswith("test_")]


def _check_outputs(name, x, logits_eval, logits_train, updates, variables, num_classes):
  for logits in (logits_eval, logits_train):
    # Classifiers give (N, K); dense models (unet) give (N, H, W, K).
    assert logits.shape in ((2, num_classes), (2, *x.shape[1:3], num_classes)), name
    assert logits.dtype == jnp.float32, name
  (feats,) = updates["intermediates"]["pre_logits"]
  assert feats.shape[0] == 2 and feats.shape[-1] == variables["params"]["head"]["kernel"].shape[-2]
  if "batch_stats" in variables:
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates["batch_stats"])), name


def _forward(model):
  def forward(variables, x):
    logits_eval = model.apply(variables, x, train=False)
    logits_train, updates = model.apply(variables, x, train=True, mutable=True,
                                        rngs={"dropout": jax.random.key(2)})
    return logits_eval, logits_train, updates
  return forward


# The newer families train at reduced size (under pmap, both dtypes) in test_models_zoo.py.
@pytest.mark.parametrize("name", [n for n in _names() if n not in SMALL_ZOO])
def test_forward(name):
  fields = SMALL_MODELS[name]
  x = model_example(name)
  model = models.create(name, **fields)
  variables = init_variables(model, x, train=False)
  for dtype in (jnp.float32, jnp.bfloat16):
    typed = models.create(name, dtype=dtype, **fields)
    logits_eval, logits_train, updates = compile_fast(_forward(typed), variables, x)(variables, x)
    _check_outputs(name, x, logits_eval, logits_train, updates, variables, typed.num_classes)
    for logits in (logits_eval, logits_train):
      assert np.isfinite(np.asarray(logits)).all(), (name, dtype)
    if "batch_stats" in variables:
      stats = jax.tree.leaves(updates["batch_stats"])
      # A training step moves running statistics by O(0.1); allclose's 1e-5 is far below.
      assert any(not np.allclose(a, b) for a, b in
                 zip(stats, jax.tree.leaves(variables["batch_stats"])))
    if dtype == jnp.float32:
      reference = logits_eval
    else:  # bf16 compute tracks the float32 logits loosely
      scale = float(jnp.max(jnp.abs(reference))) + 1.0
      assert float(jnp.max(jnp.abs(logits_eval - reference))) < 0.25 * scale


@pytest.mark.parametrize("name", _names())
def test_full_size_shapes_and_dtypes(name):
  """The registered (full-size) configuration, traced in both modes (float32: the reduced
  models above check bfloat16)."""
  x = model_example(name)
  model = models.create(name)

  def init_and_forward(x):  # init's own (eval-mode) call gives the eval logits: two traces, not three
    logits_eval, variables = model.init_with_output(jax.random.key(0), x, train=False)
    logits_train, updates = model.apply(variables, x, train=True, mutable=True,
                                        rngs={"dropout": jax.random.key(2)})
    return variables, logits_eval, logits_train, updates

  variables, *outputs = jax.eval_shape(init_and_forward, x)
  _check_outputs(name, x, *outputs, variables, model.num_classes)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))


@pytest.mark.parametrize("mode", ["blur", "aps"])
@pytest.mark.parametrize("name,shape", [("resnet18_cifar", (2, 16, 16, 3)),
                                        ("lenet5", (2, 32, 32, 3)),
                                        ("mobilenet_v2", (2, 32, 32, 3))])
def test_antialiased_models_keep_shapes(name, shape, mode):
  x = jax.random.uniform(jax.random.key(3), shape)
  plain = models.create(name)
  model = models.create(name, downsample=mode)
  kw = {"train": False, "capture_intermediates": True, "mutable": ["intermediates"]}
  v = jax.eval_shape(lambda: plain.init(jax.random.key(0), x, train=False))
  va = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  # Downsampling layers have no parameters: the parameter trees are identical.
  assert jax.tree.structure(v["params"]) == jax.tree.structure(va["params"])
  _, inter = jax.eval_shape(lambda v: plain.apply(v, x, **kw), v)
  _, inter_a = jax.eval_shape(lambda v: model.apply(v, x, **kw), va)
  assert inter_a["intermediates"]["pre_logits"][0].shape == inter["intermediates"]["pre_logits"][0].shape
  names = jax.tree_util.tree_leaves_with_path(inter_a["intermediates"])
  assert any("downsample" in jax.tree_util.keystr(p) for p, _ in names)


def test_resnet_blur_forward_is_finite():
  x = jax.random.uniform(jax.random.key(4), (2, 16, 16, 3))
  model = models.create("resnet18_cifar", downsample="blur", num_filters=8)
  variables = init_variables(model, x, train=False)
  logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
