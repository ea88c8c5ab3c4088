"""The WRN-28-10 CIFAR-10 config: its smoke variant trains end to end on mock CIFAR-10."""

import os

import pytest
from test_train_script import ROOT, smoke_under_mock_data
from testlib import load_file


def test_wrn_config_recipe():
  config = load_file(os.path.join(ROOT, "experiments", "configs", "cifar10_wrn28_10.py")).get_config()
  assert config.model.name == "wrn28_10" and config.model.kwargs.dropout_rate == 0.3
  assert config.schedule.name == "piecewise" and config.schedule.decay_factor == 0.2
  assert tuple(config.schedule.boundaries_epochs) == (60.0, 120.0, 160.0)


@pytest.mark.slow
def test_wrn_smoke_one_epoch_under_mock_data(tmp_path):
  smoke_under_mock_data(tmp_path, "cifar10_wrn28_10.py", "cifar10")
