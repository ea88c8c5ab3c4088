"""The WRN-28-10 CIFAR-10 config: its smoke variant trains end to end on mock CIFAR-10."""

import os

import jax
import pytest
import tensorflow_datasets as tfds
from test_train_script import N_MOCK, ROOT, _load, _mock_metadata, _MockSource

from cnnjax.train import train_and_evaluate


def test_wrn_config_recipe():
  config = _load(os.path.join(ROOT, "experiments", "configs", "cifar10_wrn28_10.py")).get_config()
  assert config.model.name == "wrn28_10" and config.model.kwargs.dropout_rate == 0.3
  assert config.schedule.name == "piecewise" and config.schedule.decay_factor == 0.2
  assert tuple(config.schedule.boundaries_epochs) == (60.0, 120.0, 160.0)


@pytest.mark.slow
def test_wrn_smoke_one_epoch_under_mock_data(tmp_path):
  data_dir = str(tmp_path / "tfds")
  _mock_metadata(data_dir, "cifar10")
  path = os.path.join(ROOT, "experiments", "configs", "cifar10_wrn28_10.py")
  config = _load(path).get_config("smoke")
  with config.unlocked():
    config.compilation_cache_dir = ""
    config.data.data_dir = data_dir
    config.plots = False
  with tfds.testing.mock_data(
      num_examples=N_MOCK, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES,
      as_data_source_fn=lambda builder, split, **_: _MockSource(builder.info.features)):
    summary = train_and_evaluate(config, str(tmp_path / "run"), devices=jax.local_devices()[:2])
  assert summary["steps"] == summary["steps_per_epoch"] == 2  # 64 examples / batch 32
  assert summary["test_count"] == N_MOCK
  assert 0.0 <= summary["test_accuracy"] <= 1.0
