"""Every registered model: forward shape and finiteness, float32 and bfloat16, train and eval.

Each model is initialised once at its registered smallest input (batch 2);
the two dtypes reuse the float32 parameters (``param_dtype`` is float32 in
both). Programs are compiled with LLVM optimisations off: this halves the
compile time, which dominates on CPU at these sizes.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models

_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
_HEAVY = {"alexnet", "vgg11", "vgg16", "vgg11_bn", "vgg16_bn", "resnet34", "resnet34_cifar",
          "resnet50", "resnet50_cifar", "googlenet", "googlenet_small", "mobilenet_v2"}


def _compiled(fn, *args):
  return jax.jit(fn).lower(*args).compile(compiler_options=_FAST_COMPILE)


def _example(name):
  spec = models.spec(name)
  shape = (2, *spec.input_shape)
  if spec.input_dtype == "int32":
    return jax.random.randint(jax.random.key(1), shape, 0, 64, jnp.int32)
  return jax.random.uniform(jax.random.key(1), shape, jnp.float32)


# Run at reduced depth and width in test_models_zoo.py: at full size their CPU compiles take minutes.
_REDUCED_ELSEWHERE = {"convnext_tiny", "resnext50_32x4d", "wide_resnet50_2", "efficientnet_b0",
                      "densenet121", "wrn28_10"}


def _cases():
  return [pytest.param(n, marks=pytest.mark.slow) if n in _HEAVY else n for n in models.names()
          if not n.startswith("test_") and n not in _REDUCED_ELSEWHERE]


@pytest.mark.parametrize("name", _cases())
def test_forward(name):
  x = _example(name)
  model = models.create(name)
  variables = _compiled(lambda x: model.init(jax.random.key(0), x, train=False), x)(x)
  for dtype in (jnp.float32, jnp.bfloat16):
    typed = models.create(name, dtype=dtype)

    def forward(variables, x, typed=typed):
      logits_eval = typed.apply(variables, x, train=False)
      logits_train, updates = typed.apply(variables, x, train=True, mutable=True,
                                          rngs={"dropout": jax.random.key(2)})
      return logits_eval, logits_train, updates

    logits_eval, logits_train, updates = _compiled(forward, variables, x)(variables, x)
    for logits in (logits_eval, logits_train):
      # Classifiers give (N, K); dense models (unet) give (N, H, W, K).
      assert logits.shape in ((2, typed.num_classes), (2, *x.shape[1:3], typed.num_classes))
      assert logits.dtype == jnp.float32
      assert np.isfinite(np.asarray(logits)).all(), (name, dtype)
    (feats,) = updates["intermediates"]["pre_logits"]
    assert feats.shape[0] == 2 and feats.shape[-1] == variables["params"]["head"]["kernel"].shape[-2]
    if "batch_stats" in variables:
      stats = jax.tree.leaves(updates["batch_stats"])
      assert all(s.dtype == jnp.float32 for s in stats)
      # A training step moves running statistics by O(0.1); allclose's 1e-5 is far below.
      assert any(not np.allclose(a, b) for a, b in
                 zip(stats, jax.tree.leaves(variables["batch_stats"])))
    if dtype == jnp.float32:
      reference = logits_eval
    else:  # bf16 compute tracks the float32 logits loosely
      scale = float(jnp.max(jnp.abs(reference))) + 1.0
      assert float(jnp.max(jnp.abs(logits_eval - reference))) < 0.25 * scale


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
  variables = _compiled(lambda x: model.init(jax.random.key(0), x, train=False), x)(x)
  logits = _compiled(lambda v, x: model.apply(v, x, train=False), variables, x)(variables, x)
  assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()
