"""Bad input gets one clear message, before anything compiles; never a raw trace.

The command-line cases run ``experiments/train.py`` as a user would and check
its exit status and stderr (``faults_common.assert_clean_error``: an
``error:`` line naming what was expected and what was received, no
``Traceback``, no ``XlaRuntimeError``/``jaxlib`` text). Already proven
elsewhere: a misspelt key (``tests/experiments/test_train_script.py::test_script_rejects_a_misspelt_override_naming_the_nearest_key``),
an unknown model (``...::test_script_reports_an_unknown_model_before_compiling``).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from faults_common import assert_clean_error, run, tiny_config, train_args
from PIL import Image

from cnnjax import models
from cnnjax.train import config as config_lib
from cnnjax.train import train_and_evaluate


def _folder(root, sizes):
  rng = np.random.default_rng(0)
  for name, size in sizes.items():
    os.makedirs(root / name, exist_ok=True)
    if size is None:
      (root / name / "readme.txt").write_text("no images here")
      continue
    for i in range(3):
      Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8), mode="L").save(
          root / name / f"{i}.png")
  return str(root)


def _case(name, tmp_path):
  """``(extra flags, devices, needles)`` of one command-line case."""
  if name == "string_for_int":
    return ["--config.batch_size=abc"], 2, ["--config.batch_size=abc", "invalid literal for int()"]
  if name == "batch_not_divisible":
    return (["--config.batch_size=30"], 4,
            ["batch_size=30 must be a positive multiple of the number of devices (4", "batch_size=28"])
  if name == "unknown_optimizer":
    return (["--config.optimizer.name=adagrad"], 2,
            ["optimizer.name='adagrad' is not one of ['sgd', 'adam', 'adamw']"])
  if name == "unknown_dataset":
    return (["--config.data.name=digitz"], 2,
            ["unknown data set 'digitz' (did you mean 'digits'?): expected an embedded data set "
             "['digit_scenes', 'digits', 'digits_rotation']"])
  if name == "dataset_not_prepared":
    data_dir = str(tmp_path / "tfds")
    return (["--config.data.name=mnist", f"--config.data.data_dir={data_dir}"], 2,
            ["TFDS data set 'mnist' is not prepared",
             f"python -m cnnjax.data.prepare mnist --data_dir {data_dir}"])
  if name == "folder_without_images":
    root = _folder(tmp_path / "empty", {"cats": None, "dogs": None})
    return [f"--config.data.name=folder:{root}"], 2, ["has no images", ".png, .jpg, .jpeg"]
  if name == "folder_mixed_sizes":
    root = _folder(tmp_path / "mixed", {"cats": (8, 8), "dogs": (9, 7)})
    return ([f"--config.data.name=folder:{root}"], 2,
            ["mixes image sizes", "8x8 (HxW): 3 files", "9x7 (HxW): 3 files, e.g. dogs/0.png"])
  if name == "misspelt_model_field":
    return (["--config.model.kwargs.widht=2"], 2,
            ["model 'digits_cnn' has no field 'widht'", "did you mean 'width'?"])
  raise AssertionError(name)


CLI_CASES = ["string_for_int", "batch_not_divisible", "unknown_optimizer", "unknown_dataset",
             "dataset_not_prepared", "folder_without_images", "folder_mixed_sizes",
             "misspelt_model_field"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_CASES)
def test_command_line_mistake_is_one_clear_error(tmp_path, name):
  extra, devices, needles = _case(name, tmp_path)
  workdir = tmp_path / "run"
  result = run(train_args(str(workdir), "", *extra), devices=devices, timeout=120)
  assert result.returncode == 2
  assert_clean_error(result, *needles)
  assert not (workdir / "checkpoints").exists()  # stopped before training


@pytest.mark.slow
def test_resuming_another_architectures_checkpoint_from_the_command_line(tmp_path):
  workdir = str(tmp_path / "run")
  lenet = tiny_config(**{"model.name": "lenet5", "model.kwargs": {"padding": "SAME"},
                         "num_train_steps": 4})
  train_and_evaluate(lenet, workdir, devices=jax.local_devices()[:2])
  result = run(train_args(workdir, ""), timeout=120)
  assert result.returncode == 2
  assert_clean_error(result, "checkpoint step 4", "does not fit the model being restored",
                     "model.name='lenet5'", "this config has model.name='digits_cnn'", "--fresh")


@pytest.mark.parametrize("value,message", [
    ("64", r"config batch_size must be int, got '64' \(str\)"),
    (64.0, r"config batch_size must be int, got 64.0 \(float\)"),
    (True, r"config batch_size must be int, got True \(bool\)"),
])
def test_wrong_type_in_a_plain_dict_config(tmp_path, value, message):
  config = config_lib.to_dict(tiny_config())
  config["batch_size"] = value
  with pytest.raises(TypeError, match=message):
    train_and_evaluate(config, str(tmp_path / "run"), devices=jax.local_devices()[:2])
  config = config_lib.to_dict(tiny_config())
  config["optimizer"]["learning_rate"] = "0.1"
  with pytest.raises(TypeError, match=r"optimizer.learning_rate must be float, got '0.1'"):
    config_lib.validate(config)
  config["optimizer"]["learning_rate"] = 1  # an int where a float is expected is fine
  config_lib.validate(config)


IMAGE_MODELS = [("digits_cnn", (8, 8, 1)), ("lenet5", (28, 28, 1)),
                ("resnet18_cifar", (32, 32, 3)), ("mobilenet_v2", (32, 32, 3))]


@pytest.mark.parametrize("name,shape", IMAGE_MODELS, ids=[n for n, _ in IMAGE_MODELS])
def test_model_input_mistakes_name_expected_and_received(name, shape):
  model = models.create(name, num_classes=10)
  h, w, c = shape
  key = jax.random.key(0)
  nchw = jnp.zeros((2, c, h, w), jnp.float32)
  with pytest.raises(ValueError, match=r"NHWC.*\(2, %d, %d, %d\)" % (c, h, w)) as e:
    model.init(key, nchw, train=False)
  assert "moveaxis" in str(e.value) or "channels" in str(e.value)
  with pytest.raises(ValueError, match=r"rank 4; got shape \(%d, %d, %d\) \(rank 3\)" % (h, w, c)):
    model.init(key, jnp.zeros(shape, jnp.float32), train=False)
  with pytest.raises(TypeError, match=r"floating images.*got dtype uint8"):
    model.init(key, jnp.zeros((2, *shape), jnp.uint8), train=False)


def test_model_apply_checks_inputs_too():
  model = models.create("digits_cnn", num_classes=10)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)), train=False)
  with pytest.raises(ValueError, match=r"channels-first \(NCHW"):
    model.apply(variables, np.zeros((4, 1, 8, 8), np.float32), train=False)
  with pytest.raises(TypeError, match="got dtype int32"):
    model.apply(variables, np.zeros((4, 8, 8, 1), np.int32), train=False)
