"""Test configuration: eight fake CPU devices, set before jax is imported."""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Non-partitionable threefry compiles a random draw of a 4-D kernel shape
# faster on CPU, which is most of the cost of the many small model inits in
# this suite. Set through the environment so that subprocesses started by
# tests (resume, multi-host) draw the same numbers as the test itself. It is
# only a default: CI's newest-stack run sets JAX_THREEFRY_PARTITIONABLE=1
# (JAX's own default), so every equality and resume test also passes under
# the PRNG users get.
os.environ.setdefault("JAX_THREEFRY_PARTITIONABLE", "0")
# XLA:CPU compile options of the suite. Compilation is most of the suite's
# time, and on jaxlib 0.10 XLA:CPU compiles the suite's programs about a third
# faster with its previous (loop) emitters than with the MLIR fusion emitters
# that are its default there (the training steps of six reduced zoo models:
# 10.7 s -> 6.9 s of compile). Later jaxlib releases no longer have the option
# (an unknown XLA flag is a fatal error), so it is set for jaxlib 0.10 only.
# LLVM's optimisation level 1 instead of XLA's default 2
# (--xla_backend_optimization_level=1, every jaxlib) takes a tenth off the
# CPU time of compile-bound modules (tests/ops/test_ops_conv_fast.py and
# tests/models/test_models_forward.py in one process: 99 -> 88 s) and computes
# the same ResNet-50 loss as level 2, bit for bit, in `gpu_resnet50.py --smoke`
# (level 0 made it NaN, and is not used). Every other option stays XLA's default.
# CNNJAX_TEST_XLA_DEFAULTS=1 runs the suite under XLA's default options; CI runs
# the numerical tests that way too (.ci/run), so the default emitters stay
# covered. Subprocesses started by tests get the same options through
# $CNNJAX_TEST_XLA_FLAGS, so a run in a subprocess compiles what the test's own
# reference run compiles.


def _suite_xla_flags() -> str:
  if os.environ.get("CNNJAX_TEST_XLA_DEFAULTS", "").lower() in ("1", "true", "yes"):
    return ""
  from importlib import metadata  # noqa: PLC0415
  flags = "--xla_backend_optimization_level=1"
  try:
    major_minor = tuple(int(p) for p in metadata.version("jaxlib").split(".")[:2])
  except (metadata.PackageNotFoundError, ValueError):
    return flags
  return f"{flags} --xla_cpu_use_fusion_emitters=false" if major_minor == (0, 10) else flags


os.environ["CNNJAX_TEST_XLA_FLAGS"] = _suite_xla_flags()
if os.environ["CNNJAX_TEST_XLA_FLAGS"] not in os.environ["XLA_FLAGS"]:  # xdist workers inherit it
  os.environ["XLA_FLAGS"] += " " + os.environ["CNNJAX_TEST_XLA_FLAGS"]

import ctypes  # noqa: E402
import ctypes.util  # noqa: E402
import gc  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", deadline=None, max_examples=30, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=15)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

assert jax.device_count() == 8, "tests/conftest.py must run before jax is imported"


# glibc keeps the memory of freed executables and arrays in its arenas;
# malloc_trim hands it back to the system, so that a worker's resident memory
# is what it holds rather than the most it ever held (tests/models and
# tests/ops/test_ops_conv_fast.py in one process: 2.5-3 GB between modules
# before, 0.7-0.8 GB after; the whole suite's largest process 4.5 -> 3.3 GB).
_LIBC_PATH = ctypes.util.find_library("c")
_MALLOC_TRIM = getattr(ctypes.CDLL(_LIBC_PATH), "malloc_trim", None) if _LIBC_PATH else None


def _return_freed_memory():
  gc.collect()
  # What survives a full collection here is long-lived (imported modules,
  # session fixtures, module globals of collected tests): freezing it keeps
  # it out of every later collection, this one's and Python's automatic
  # ones. With jax, Flax and TensorFlow imported, a full collection took
  # 0.3 s (some 50 s of the suite's CPU time, at each module's end and in
  # tests that release memory); after a freeze it walks only what the last
  # module left, a few ms (tests/layers, blocks, inspect and
  # models/test_models_forward.py in one process: 4.4 s -> 0.3 s of
  # collections). Frozen objects are still freed by reference counting; only
  # a reference cycle among them would outlive the run.
  gc.freeze()
  if _MALLOC_TRIM is not None:  # glibc only
    _MALLOC_TRIM(0)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_functions():
  """Drops JAX's compiled executables and tracing caches after each test module.

  Nothing compiled is shared across modules (each builds its own models and
  shapes), and keeping every executable of the suite alive grew one process to
  several GB.
  """
  yield
  jax.clear_caches()
  _return_freed_memory()


@pytest.fixture(autouse=True, scope="session")
def _compilation_cache_of_this_run(tmp_path_factory):
  """Training runs' default compilation cache: one directory per test run, not ``~/.cache``.

  ``$CNNJAX_COMPILATION_CACHE`` is the default ``compilation_cache_dir`` of a
  training config, so every run of ``experiments/train.py`` a test starts,
  and every in-process run that keeps the default, shares this directory
  with the run's other workers: the many runs of the same small config
  compile their step once. It starts empty each test run, and nothing is
  written to the user's home.

  Only training runs turn the cache on. Turned on for every compilation of
  the suite, it was measured slower (651 s against 584 s from an empty
  cache): most programs compile once, and writing each costs more than the
  few repeats save.
  """
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent  # the run's directory, above each worker's own
  os.environ["CNNJAX_COMPILATION_CACHE"] = str(base / "xla-cache")
  yield


@pytest.fixture
def release_memory_after():
  """Returns freed memory to the system after the test, for modules whose tests each hold
  large weights (``pytestmark = pytest.mark.usefixtures("release_memory_after")``)."""
  yield
  _return_freed_memory()
