"""What many test modules share: seeded random arrays and variables, tolerances, the tiny run.

Importable from every test module (``tests/`` is on ``sys.path`` because
``tests/conftest.py`` lives there) and from the scripts the tests start (they
put ``tests/`` on the path themselves).
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import os
import sys

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: The key ``random_variables`` traces ``init`` with (only shapes are used).
KEY = jax.random.key(0)
#: float32 machine epsilon, the unit of the tolerances below.
EPS32 = float(np.finfo(np.float32).eps)
#: Compile options of tests whose programs take longer to compile than to run
#: (reduced models and blocks at a batch of one or two): LLVM's optimisations
#: off, a quarter to a half less compile time (``test_models_forward.py``'s
#: forward tests: 29 -> 21 s). Empty where the suite's own compile options are
#: (``tests/conftest.py`` leaves ``$CNNJAX_TEST_XLA_FLAGS`` empty under
#: ``CNNJAX_TEST_XLA_DEFAULTS=1``), so that CI's run under XLA's defaults
#: compiles these programs as users do.
FAST_COMPILE: dict[str, Any] = (
    {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    if os.environ.get("CNNJAX_TEST_XLA_FLAGS") else {})


def compile_fast(fn: Any, *args: Any) -> Any:
  """``fn`` (jitted unless it already is) lowered for ``args`` and compiled with
  ``FAST_COMPILE``: the compiled function, to call with arguments like ``args``."""
  jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
  return jitted.lower(*args).compile(compiler_options=FAST_COMPILE)


def normal(shape: tuple[int, ...], seed: int | np.random.Generator = 1, *,
           dtype: Any = jnp.float32, loc: float = 0.0, scale: float = 1.0) -> jax.Array:
  """``loc + scale * N(0, 1)`` of ``shape`` as a jax array, drawn with NumPy.

  ``seed``: an int (NumPy's seeded legacy stream) or a ``np.random.Generator``
  to draw several arrays from one stream. NumPy draws cost nothing to
  compile, where a ``jax.random`` draw compiles a program for every shape.
  """
  rng = seed if isinstance(seed, np.random.Generator) else np.random.RandomState(seed)
  return jnp.asarray(loc + scale * rng.standard_normal(shape), dtype)


def random(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
  """``N(0, 1)`` of ``shape`` as a float32 NumPy array (writable, e.g. for NaN probes)."""
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def flat_normal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """LeCun-scaled normal drawn flat then reshaped: XLA:CPU compiles a 4-D draw slowly."""
  fan_in = int(np.prod(shape[:-1]))
  return (jax.random.normal(key, (int(np.prod(shape)),), dtype) / np.sqrt(fan_in)).reshape(shape)


def random_like(tree: Any, seed: int = 2, *, scale: float = 1.0) -> Any:
  """A pytree of the shapes and dtypes of ``tree``, filled with ``scale * N(0, 1)``."""
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape) * scale, a.dtype), tree)


def random_variables(layer: Any, x: Any, seed: int = 2, *, scale: float = 1.0,
                     zero: Iterable[str] = ()) -> dict:
  """Variables of ``layer`` with the shapes ``init`` gives, filled from NumPy.

  ``eval_shape`` avoids compiling a random initialiser for every shape.
  Top-level parameter subtrees named in ``zero`` are zeros instead (e.g. the
  offset convolution of a deformable layer, which starts at zero).
  """
  shapes = jax.eval_shape(layer.init, KEY, x)
  zero = set(zero)
  out = random_like({k: v for k, v in shapes.items()}, seed, scale=scale)
  if zero:
    params = dict(out["params"])
    for name in zero:
      params[name] = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes["params"][name])
    out["params"] = params
  return out


def init_variables(module: Any, *inputs: Any, seed: int = 0, **kwargs: Any) -> dict:
  """Variables of the shapes ``module.init(key, *inputs, **kwargs)`` gives, drawn with NumPy.

  Nothing is compiled: ``init`` is only traced (``jax.eval_shape``), which
  saves the seconds XLA:CPU spends compiling random initialisers. ``z`` is
  uniform with mean 0 and variance 1 (float32 uniform draws are about eight
  times faster than normal ones, which took seconds for AlexNet's and VGG's
  dense layers). Kernels are ``z / sqrt(fan_in)`` (``fan_in``: the product
  of every axis but the last; LeCun's uniform scale, so activations keep
  their magnitude with depth); embeddings ``z``; BatchNorm scales
  ``1 + 0.1 z``; running variances ``1 + 0.1 |z|``; every other leaf
  (biases, running means, layer scales) ``0.1 z``.
  """
  shapes = jax.eval_shape(lambda *a: module.init(KEY, *a, **kwargs), *inputs)
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = getattr(path[-1], "key", str(path[-1]))
    z = (2 * rng.random(leaf.shape, dtype=np.float32) - 1) * np.float32(np.sqrt(3))
    if name == "kernel":
      z = z / np.sqrt(max(1, int(np.prod(leaf.shape[:-1]))))
    elif name == "embedding":
      pass
    elif name == "scale":
      z = 1.0 + 0.1 * z
    elif name == "var":
      z = 1.0 + 0.1 * np.abs(z)
    else:
      z = 0.1 * z
    return jnp.asarray(z, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def equations(jaxpr: Any) -> Iterator[Any]:
  """Every equation of ``jaxpr`` (a jaxpr or closed jaxpr), nested jaxprs' included.

  ``ops.conv`` is a jitted function, so its primitives sit inside a ``jit``
  equation of the caller's jaxpr rather than at its top level.
  """
  for eqn in getattr(jaxpr, "jaxpr", jaxpr).eqns:
    yield eqn
    for param in eqn.params.values():
      for sub in param if isinstance(param, (tuple, list)) else (param,):
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          yield from equations(sub)


def primitives(fn: Any, *args: Any) -> collections.Counter:
  """How many times each primitive occurs in ``fn``'s jaxpr, nested jaxprs included."""
  return collections.Counter(e.primitive.name for e in equations(jax.make_jaxpr(fn)(*args)))


def model_example(name: str) -> jax.Array:
  """A batch of 2 inputs of registered model ``name``: token ids or uniform images."""
  from cnnjax import models  # noqa: PLC0415
  spec = models.spec(name)
  shape = (2, *spec.input_shape)
  if spec.input_dtype == "int32":
    return jax.random.randint(jax.random.key(1), shape, 0, 64, jnp.int32)
  return jax.random.uniform(jax.random.key(1), shape, jnp.float32)


def sum_tolerance(terms: int, magnitude: float, *, safety: float = 8.0) -> float:
  """An absolute tolerance for float32 results of sums of ``terms`` products.

  The worst-case rounding error of a sum of ``n`` float32 terms is
  ``n * eps32 * sum|terms|``; ``magnitude`` stands for that sum (e.g. the
  largest ``|x|`` times ``|w|`` summed over a receptive field, or the largest
  output). ``safety`` absorbs the different summation orders of two
  implementations (both sides round).
  """
  return safety * terms * EPS32 * float(magnitude)


def assert_trees_close(a: Any, b: Any, *, rtol: float, atol_scale: float | None = None) -> None:
  """Same structure and every leaf close: ``|a - b| <= rtol * |b| + atol_scale * max|b|``.

  ``max|b|`` is over the whole tree (``atol_scale`` defaults to ``rtol``):
  rounding comes from the sums a value is computed from, not from its own
  size. A leaf whose exact value stays ~0 (a convolution bias followed by
  BatchNorm gets a zero gradient) holds only the rounding of the other
  parameters' updates, e.g. 1e-9 vs 1e-8, which no leaf-relative tolerance
  accepts.
  """
  atol_scale = rtol if atol_scale is None else atol_scale
  leaves_a = jax.tree_util.tree_leaves_with_path(a)
  leaves_b = jax.tree_util.tree_leaves_with_path(b)
  assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
  assert leaves_a
  # Counters (the step) are compared exactly and do not set the scale.
  scale = max((float(np.max(np.abs(np.asarray(y)), initial=0.0)) for _, y in leaves_b
               if np.issubdtype(np.asarray(y).dtype, np.floating)), default=0.0)
  for (path, x), (_, y) in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol_scale * scale,
                               err_msg=jax.tree_util.keystr(path))


#: The repository's root (experiments/, benchmarks/, experiments/configs/).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_file(path: str, name: str | None = None) -> Any:
  """Runs the Python file ``path`` as a module named ``name`` (default: its file name) and returns it.

  For experiment scripts and config files, which are not in an importable
  package. The module is in ``sys.modules`` before it runs: Flax modules it
  defines are dataclasses, which look their module up.
  """
  name = name or os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def config_file_smoke_variant(name: str):
  """``experiments/configs/<name>``'s own ``:smoke`` variant, as its docstring runs it.

  Only the compilation cache is off (``compilation_cache_dir=''``): the
  suite's in-process runs compile in memory.
  """
  config = load_file(os.path.join(ROOT, "experiments", "configs", name)).get_config("smoke")
  with config.unlocked():
    config.compilation_cache_dir = ""
  return config


def tiny_config(**overrides: Any):
  """A locked in-process training config: digits_cnn of width 4, 10 steps, checkpoints at 4, 8, 10.

  256 training examples in batches of 32 (8 steps an epoch), no evaluation
  during training unless ``eval_every_epochs`` is overridden. ``overrides``
  are dotted keys, e.g. ``tiny_config(**{'optimizer.learning_rate': 1.0})``.
  """
  from cnnjax.train import config as config_lib  # noqa: PLC0415

  c = config_lib.base_config()
  c.model.name = "digits_cnn"
  c.model.kwargs = {"width": 4}
  c.data.name = "digits"
  c.data.train_subset = 256
  c.batch_size = 32
  c.eval_batch_size = 40
  c.num_train_steps = 10
  c.optimizer.learning_rate = 0.05
  c.schedule.name = "constant"
  c.log_every_steps = 2
  c.checkpoint_every_steps = 4
  c.eval_every_epochs = 100
  c.progress_bar = False
  c.plots = False
  c.compilation_cache_dir = ""
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config_lib.lock(c)


def assert_close(actual: Any, desired: Any, *, rtol: float, err_msg: str = "") -> None:
  """``|actual - desired| <= rtol * (|desired| + max|desired|)`` elementwise.

  The absolute part scales with the largest magnitude compared: rounding of a
  sum is relative to the sum's terms, so entries that cancel to near zero
  carry the error of the large ones. Choose ``rtol`` from the number of terms
  accumulated (about ``terms * eps32`` for a worst-case float32 sum).
  """
  desired = np.asarray(desired)
  scale = float(np.max(np.abs(desired))) if desired.size else 0.0
  np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=err_msg)


class ArrayLoader:
  """Batches of in-memory arrays in ``BatchPlan``'s order, with a checkpointable position."""

  def __init__(self, images, labels, *, train, batch_size, seed):
    self.images, self.labels, self.train = images, labels, train
    from cnnjax.data.loader import BatchPlan  # noqa: PLC0415
    self.plan = BatchPlan(len(labels), batch_size, 0, 1, train, seed)
    self.steps_per_epoch = self.plan.steps_per_epoch
    self.step = 0

  def __iter__(self):
    while self.train or self.step < self.steps_per_epoch:
      index, mask = self.plan(self.step)
      self.step += 1
      yield {"image": self.images[index], "label": self.labels[index], "mask": mask}
    self.step = 0

  def get_state(self):
    return {"step": self.step}

  def set_state(self, state):
    self.step = int(state["step"])


class ArrayData:
  """A data set object (``cnnjax.train.setup.DataSet``): 3 classes of (6, 6, 2) images, made up in memory."""

  name, num_classes, image_shape, splits = "arrays", 3, (6, 6, 2), ("train", "test")

  def __init__(self):
    rng = np.random.default_rng(0)
    self.labels = rng.integers(0, 3, 96).astype(np.int32)
    self.images = (rng.normal(size=(96, 6, 6, 2)) + self.labels[:, None, None, None]).astype(np.float32)

  def loader(self, split, *, train, batch_size, seed, subset=None):
    n = 64 if split == "train" else 96
    return ArrayLoader(self.images[:n], self.labels[:n], train=train, batch_size=batch_size,
                       seed=seed)


def killed_preparation_script(after: int) -> str:
  """Python source that prepares ``digits`` in ``sys.argv[1]`` and SIGKILLs itself after ``after`` examples."""
  return f"""
import os, signal, sys
from cnnjax.data import digits
original = digits.Digits._generate_examples
def dying(self, *args):
  for i, example in enumerate(original(self, *args)):
    if i == {after}:
      os.kill(os.getpid(), signal.SIGKILL)
    yield example
digits.Digits._generate_examples = dying
digits.prepare_digits(sys.argv[1])
"""


def last_logged_step(workdir: str) -> int:
  """The newest train step in ``metrics.jsonl`` (0 if none; a partial last line is ignored)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    steps = [json.loads(line)["step"] for line in f if line.endswith("\n")]
  return max(steps, default=0)


#: The newer zoo families at a reduced depth and width: (registered name, fields).
#: ConvNeXt also takes a 3x3 depthwise kernel, whose training step compiles in a fraction
#: of the 7x7 one's time on CPU (BENCHMARKS.md section 13); the 7x7 kernel is traced at
#: full size here and run in tests/models/test_models_zoo_torch_import.py.
SMALL_ZOO = {
    "convnext_tiny": {"depths": (1, 1), "dims": (8, 16), "kernel_size": 3},
    "resnext50_32x4d": {"stage_sizes": (1, 1), "num_filters": 16},
    "wide_resnet50_2": {"stage_sizes": (1, 1), "num_filters": 4},
    "efficientnet_b0": {"stages": ((1, 3, 1, 16, 8, 1), (6, 5, 2, 8, 16, 2))},
    "densenet121": {"block_config": (2, 2), "growth_rate": 8, "num_init_features": 16,
                    "bn_size": 2},
    "wrn28_10": {"depth": 10, "widen_factor": 1, "dropout_rate": 0.3},
}

_INCEPTION_ROW = (8, 4, 8, 2, 4, 4)

#: Every registered model at a reduced depth and width, reached through its own
#: fields: the same code paths (stems, every block kind, pools, heads, dropout,
#: BatchNorm) in programs that compile in seconds on CPU. Full sizes are traced
#: (``jax.eval_shape``) and, where torchvision has the model, compared with it
#: in the weight-import tests.
SMALL_MODELS = {
    "alexnet": {},  # five convolutions at 64x64: small already, and it has no size field.
    "digits_cnn": {"width": 4},
    "googlenet": {"stages": ((_INCEPTION_ROW,), (_INCEPTION_ROW, _INCEPTION_ROW))},
    "googlenet_small": {"stages": ((_INCEPTION_ROW,), (_INCEPTION_ROW, _INCEPTION_ROW))},
    "lenet5": {},
    "mobilenet_v2": {"stages": ((1, 8, 1, 1), (6, 8, 2, 2)), "width_multiplier": 0.25},
    **{n: {"stage_sizes": (1, 1), "num_filters": 4}
       for n in ("resnet18", "resnet18_cifar", "resnet34", "resnet34_cifar", "resnet50",
                 "resnet50_cifar")},
    "textcnn": {"features": 4, "embed_dim": 4},
    "unet": {"features": (4, 8)},
    **{n: {"stages": ((8,), (8, 8))} for n in ("vgg11", "vgg11_bn", "vgg16", "vgg16_bn")},
    **SMALL_ZOO,
}


def send_and_wait(process: Any, signum: int, timeout: float) -> tuple[int, str, str]:
  """Sends ``signum`` to a ``subprocess.Popen`` and waits (killing it past ``timeout``).

  Returns:
    ``(status, stdout, stderr)``.
  """
  try:
    process.send_signal(signum)
    out, err = process.communicate(timeout=timeout)
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()
  return process.returncode, out, err


def digest(workdir: str) -> dict[str, str]:
  """SHA-256 of every file under ``workdir`` (relative path -> digest)."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out
