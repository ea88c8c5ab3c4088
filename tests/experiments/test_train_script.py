"""experiments/train.py and experiments/configs: every config, the smoke runs, the errors."""

import glob
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax.data import augment
from cnnjax.train import config as config_lib
from cnnjax.train import train_and_evaluate
from testlib import config_file_smoke_variant, load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py")))


def test_the_expected_configs_exist():
  names = {os.path.basename(p) for p in CONFIGS}
  assert {"digits_cnn.py", "mnist_lenet5.py", "fashion_mnist_lenet5.py",
          "cifar10_resnet18.py", "imagenet_resnet50.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_is_valid_locked_and_documented(path):
  module = load_file(path)
  name = os.path.basename(path)
  assert f"--config experiments/configs/{name}" in module.__doc__
  assert "Expected" in module.__doc__ and ":smoke" in module.__doc__
  for variant in (None, "smoke"):
    config = module.get_config(variant)
    config_lib.validate(config)
    augment.build(config.augment)
    assert config.is_locked
    with pytest.raises(AttributeError):
      config.optimizer.learning_rte = 0.1
  with pytest.raises(ValueError, match="unknown variant"):
    module.get_config("smokey")


def _smoke_run(name, run_dir):
  """Trains config ``name``'s own :smoke variant on two devices; checks the run files, returns the summary."""
  config = config_file_smoke_variant(name)
  summary = train_and_evaluate(config, str(run_dir), devices=jax.local_devices()[:2])
  for file in ("config.json", "metrics.jsonl", "summary.json", "plots/loss.png"):
    assert (run_dir / file).exists()
  return summary


@pytest.mark.slow
def test_digits_smoke_end_to_end(tmp_path):
  summary = _smoke_run("digits_cnn.py", tmp_path / "run")
  assert summary["test_count"] == 360
  # Two epochs of the default recipe already separate the ten digits well.
  assert summary["test_accuracy"] > 0.8
  assert summary["checkpoints"][-1] == summary["steps"]


@pytest.mark.slow
@pytest.mark.parametrize("name, metrics", [
    ("digits_rotation.py", ("test_mae", "test_rmse", "test_r2")),
])
def test_task_config_smoke_variant_end_to_end(tmp_path, name, metrics):
  # The configs' own :smoke variants (not a tiny copy of them), as their docstrings run them.
  # digit_scenes_unet.py's is the pmap run of tests/train/test_train_task_runs.py.
  summary = _smoke_run(name, tmp_path / "run")
  assert summary["steps"] == summary["steps_per_epoch"] > 0
  for metric in metrics:
    assert np.isfinite(summary[metric]), (metric, summary[metric])


N_MOCK = 96


def _mock_metadata(data_dir, name):
  """Writes the dataset_info.json of a prepared ArrayRecord data set (no records)."""
  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  splits = [tfds.core.SplitInfo(name=s, shard_lengths=[N_MOCK], num_bytes=0,
                                filename_template=tfds.core.ShardedFileTemplate(
                                    data_dir=builder.data_path, template="{SPLIT}",
                                    dataset_name=name, split=s, filetype_suffix="array_record"))
            for s in ("train", "test")]
  builder.info.set_splits(tfds.core.SplitDict(splits))
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)


class _MockSource:
  """mock_data's random examples with a working ``__getitems__`` (TFDS 4.9.10's binds no self)."""

  def __init__(self, features):
    self.shape, self.classes = features["image"].shape, features["label"].num_classes

  def __len__(self):
    return N_MOCK

  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    return {"image": rng.integers(0, 256, self.shape, dtype=np.uint8),
            "label": np.int64(rng.integers(self.classes))}

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def smoke_under_mock_data(tmp_path, config_file, dataset, **overrides):
  """The ``:smoke`` variant of ``config_file`` trained on ``N_MOCK`` mock examples of ``dataset``."""
  data_dir = str(tmp_path / "tfds")
  _mock_metadata(data_dir, dataset)
  config = config_file_smoke_variant(config_file)
  with config.unlocked():
    config.data.data_dir = data_dir
    config.plots = False
    for key, value in overrides.items():
      config.data[key] = value
  with tfds.testing.mock_data(
      num_examples=N_MOCK, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES,
      as_data_source_fn=lambda builder, split, **_: _MockSource(builder.info.features)):
    summary = train_and_evaluate(config, str(tmp_path / "run"), devices=jax.local_devices()[:2])
  assert summary["steps"] == summary["steps_per_epoch"] == 2  # 64 examples / batch 32
  assert summary["test_count"] == N_MOCK
  assert 0.0 <= summary["test_accuracy"] <= 1.0
  return summary


@pytest.mark.slow
def test_mnist_lenet5_one_epoch_under_mock_data(tmp_path):
  smoke_under_mock_data(tmp_path, "mnist_lenet5.py", "mnist", train_subset=64)


def _script(*args, timeout=120):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "train.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_script_rejects_a_misspelt_override_naming_the_nearest_key(tmp_path):
  result = _script("--config", "experiments/configs/digits_cnn.py",
                   "--config.optimizer.learning_rte=0.1", "--workdir", str(tmp_path / "run"))
  assert result.returncode == 2
  assert "did you mean 'optimizer.learning_rate'" in result.stderr
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "run").exists()


def test_script_reports_an_unknown_model_before_compiling(tmp_path):
  result = _script("--config", "experiments/configs/digits_cnn.py:smoke",
                   "--config.model.name=resnet19", "--workdir", str(tmp_path / "run"))
  assert result.returncode == 2
  assert "unknown model 'resnet19'" in result.stderr and "resnet18" in result.stderr
  assert "Traceback" not in result.stderr
