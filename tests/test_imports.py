"""The core API imports light: no data, checkpoint, plotting or progress-bar libraries."""

import os
import subprocess
import sys

import pytest

import cnnjax.train as cnnjax_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow_datasets", "orbax", "grain", "cv2", "tensorstore", "matplotlib",
         "sklearn", "tqdm", "tensorflow", "torch")


def _loaded_after(statement, modules=HEAVY):
  """The ``modules`` in ``sys.modules`` after ``statement``, in a fresh interpreter."""
  probe = (f"import sys; {statement}; "
           f"print(','.join(m for m in {tuple(modules)!r} if m in sys.modules))")
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=120)
  assert out.returncode == 0, out.stderr
  return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize("statement", [
    "import cnnjax; cnnjax.__version__",
    "from cnnjax import ops, layers, blocks, models, testing",
    "from cnnjax.testing import assert_shift_equivariant, strategies",
    # What experiments/train.py needs to parse and check its command line.
    "from cnnjax.train import config, distributed",
])
def test_core_imports_load_no_heavy_dependency(statement):
  assert _loaded_after(statement) == []


def test_subpackages_still_load_on_attribute_access():
  # The digits' arrays (what preparing the embedded set reads) come from scikit-learn's
  # data file without importing scikit-learn.
  loaded = _loaded_after("import cnnjax; cnnjax.data.make_loader; cnnjax.summary; "
                         "from cnnjax.data import digits; digits.digits_arrays()")
  assert "tensorflow_datasets" in loaded  # data is really there, only later.
  assert "sklearn" not in loaded


def test_train_names_load_on_first_use_and_a_linen_run_loads_no_nnx():
  """``cnnjax.train`` imports each name and submodule on first use; its loop loads
  ``flax.nnx`` and ``cnnjax.nnx`` only for an NNX state (0.14 s of every
  ``experiments/train.py`` start otherwise)."""
  nnx = ("flax.nnx", "cnnjax.nnx")
  assert set(cnnjax_train.__all__) == set(cnnjax_train._LAZY)  # every public name is reachable
  package = os.path.join(ROOT, "cnnjax", "train")
  assert set(cnnjax_train._SUBMODULES) == {  # and every submodule, as an attribute
      n.removesuffix(".py") for n in os.listdir(package) if not n.startswith("_")
      and (n.endswith(".py") or os.path.exists(os.path.join(package, n, "__init__.py")))}
  assert _loaded_after("import cnnjax.train; from cnnjax.train import loop, steps, setup", nnx) == []
  assert _loaded_after("import cnnjax.train; cnnjax.train.NNXTrainState; "
                       "cnnjax.train.setup.create_state",
                       (*nnx, "cnnjax.train.setup")) == [*nnx, "cnnjax.train.setup"]
