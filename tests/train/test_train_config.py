"""The config schema from the command line: model fields, did-you-mean, --config.help."""

import json
import os
import subprocess
import sys

import pytest

from cnnjax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _config(model="digits_cnn"):
  c = config_lib.base_config()
  c.model.name = model
  return config_lib.lock(c)


@pytest.mark.parametrize("model,key,text,expected", [
    ("digits_cnn", "width", "2", 2),
    ("digits_cnn", "dropout_rate", "0", 0.0),
    ("digits_cnn", "downsample", "blur", "blur"),
    ("digits_cnn", "input_channels", "None", None),
    ("resnet18_cifar", "num_filters", "8", 8),
    ("resnet18_cifar", "stage_sizes", "(1,1,1,1)", (1, 1, 1, 1)),
    ("resnet18_cifar", "stage_sizes", "[1, 2]", (1, 2)),
    ("resnet18_cifar", "zero_init_last_norm", "true", True),
    ("lenet5", "padding", "SAME", "SAME"),
    ("lenet5", "padding", "2", 2),
    ("vgg11", "stages", "((8,), (16, 16))", ((8,), (16, 16))),
])
def test_every_literal_model_field_is_settable_with_its_type(model, key, text, expected):
  config = _config(model)
  config_lib.apply_model_overrides(config, {key: text})
  value = config.model.kwargs[key]
  assert value == expected and type(value) is type(expected)
  config_lib.validate(config)  # What was set passes the engine's own check.


def test_model_fields_list_what_create_accepts_with_defaults():
  from cnnjax import models
  for name in models.names():
    fields = config_lib.model_fields(name)
    assert tuple(fields) == models.spec(name).fields()
  fields = config_lib.model_fields("resnet18_cifar")
  assert fields["num_filters"].default == 64 and fields["stem"].default == "cifar"
  assert fields["padding"].settable and not fields["block_cls"].settable
  assert not fields["dtype"].settable and "model.dtype" in fields["dtype"].note


@pytest.mark.parametrize("key,text,error,match", [
    ("widht", "2", ValueError, r"no field 'widht'.*did you mean 'width'\?"),
    ("width", "2.5", TypeError, r"model.kwargs.width must be int .*got 2.5 \(float\)"),
    ("width", "two", TypeError, r"model.kwargs.width must be int .*got 'two' \(str\)"),
    ("dropout_rate", "True", TypeError, r"dropout_rate must be float"),
    ("dtype", "bfloat16", ValueError, r"cannot be set from the command line: set by model.dtype"),
])
def test_bad_model_field_names_the_field_and_type(key, text, error, match):
  with pytest.raises(error, match=match):
    config_lib.apply_model_overrides(_config(), {key: text})


def test_model_kwargs_in_a_config_file_are_checked_too():
  config = config_lib.to_dict(_config())
  config["model"]["kwargs"] = {"width": "8"}
  with pytest.raises(TypeError, match=r"model.kwargs.width must be int, got|must be int \(a field"):
    config_lib.validate(config)
  config["model"]["kwargs"] = {"num_filter": 8}
  with pytest.raises(ValueError, match="no field 'num_filter'"):
    config_lib.validate(config)


def test_misspelt_top_level_key_lists_the_nearest_keys_not_all():
  message = config_lib.unknown_key_message("bach_size")
  assert "did you mean 'batch_size'?" in message
  assert "eval_batch_size" in message
  # Before: every one of the ~50 keys on one line (1,008 characters).
  assert "distributed.shutdown_timeout_s" not in message and len(message) < 250
  section = config_lib.unknown_key_message("optimizer.learning_rte")
  assert "did you mean 'optimizer.learning_rate'?" in section and "optimizer.b1" in section


def test_split_model_overrides_leaves_the_other_flags():
  rest, overrides = config_lib.split_model_overrides(
      ["prog", "--config", "f.py", "--config.model.kwargs.width=2", "--config.seed=1"])
  assert rest == ["prog", "--config", "f.py", "--config.seed=1"]
  assert overrides == {"width": "2"}


def test_describe_lists_keys_with_comments_and_the_model_fields():
  config = _config("resnet18_cifar")
  config_lib.apply_model_overrides(config, {"num_filters": "8"})
  text = config_lib.describe(config)
  assert "optimizer.learning_rate" in text and "# Peak learning rate." in text
  assert "num_filters" in text and "int = 8" in text
  assert "stage_sizes" in text and "Sequence[int] = (2, 2, 2, 2)" in text
  assert "block_cls" in text and "set it in a config file" in text


def _script(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
                        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_script_sets_model_fields_and_lists_them(tmp_path):
  result = _script("--config", "experiments/configs/digits_cnn.py",
                   "--config.model.kwargs.width=2", "--config.help")
  assert result.returncode == 0, result.stderr
  assert "width          : int = 2" in result.stdout
  assert "--config.model.kwargs.FIELD=VALUE" in result.stdout
  result = _script("--config", "experiments/configs/digits_cnn.py",
                   "--config.model.kwargs.widht=2", "--workdir", str(tmp_path / "run"))
  assert result.returncode == 2
  assert "did you mean 'width'?" in result.stderr and "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_bfloat16_on_cpu_warns_once_saying_why(caplog, monkeypatch):
  monkeypatch.setattr(config_lib, "_WARNED", set())
  config = config_lib.base_config()
  config.model.dtype = "bfloat16"
  with caplog.at_level("WARNING", logger="cnnjax.train.config"):
    message = config_lib.warn_about_backend(config, backend="cpu")
    config_lib.warn_about_backend(config, backend="cpu")
  assert "XLA:CPU has no fast bfloat16 convolution" in message
  assert "benchmarks/cpu_dtype.py" in message and "--config.model.dtype=float32" in message
  assert [r.getMessage() for r in caplog.records] == [message]  # Once.
  assert config_lib.warn_about_backend(config, backend="gpu") is None
  config.model.dtype = "float32"
  assert config_lib.warn_about_backend(config, backend="cpu") is None


def test_compilation_cache_dir_defaults_to_the_environment(monkeypatch):
  monkeypatch.delenv("CNNJAX_COMPILATION_CACHE", raising=False)
  assert config_lib.base_config().compilation_cache_dir == "~/.cache/cnnjax/jax"
  monkeypatch.setenv("CNNJAX_COMPILATION_CACHE", "/scratch/xla")
  assert config_lib.base_config().compilation_cache_dir == "/scratch/xla"
  monkeypatch.setenv("CNNJAX_COMPILATION_CACHE", "")  # off
  assert config_lib.base_config().compilation_cache_dir == ""
