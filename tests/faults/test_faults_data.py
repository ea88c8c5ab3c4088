"""Data faults end to end: a killed preparation, labels that do not fit the model.

That a killed preparation is never read and is redone is proven for the data
package alone by ``tests/data/test_data_digits.py::test_killed_preparation_is_never_read_and_is_redone``;
here training runs on the directory the killed preparation left behind.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from faults_common import env, tiny_config

from cnnjax import data
from cnnjax.data import loader as loader_lib
from cnnjax.train import train_and_evaluate
from testlib import killed_preparation_script

_KILLED_PREPARE = killed_preparation_script(after=300)


@pytest.mark.slow
def test_training_after_a_killed_preparation_prepares_again_and_trains(tmp_path):
  data_dir = str(tmp_path / "tfds")
  killed = subprocess.run([sys.executable, "-c", _KILLED_PREPARE, data_dir], env=env(),
                          capture_output=True, timeout=120)
  assert killed.returncode == -9, killed.stderr.decode()[-2000:]
  assert all(n.startswith("incomplete.") for n in os.listdir(os.path.join(data_dir, "digits")))
  summary = train_and_evaluate(tiny_config(**{"data.data_dir": data_dir}), str(tmp_path / "run"),
                               devices=jax.local_devices()[:2])
  assert summary["test_count"] == 360 and np.isfinite(summary["test_loss"])
  assert os.listdir(os.path.join(data_dir, "digits")) == ["1.0.0"]
  assert data.dataset_info("digits", data_dir=data_dir).splits == {"train": 1437, "test": 360}


def test_num_classes_below_the_data_sets_labels_is_refused_before_compiling(tmp_path):
  config = tiny_config(**{"model.kwargs": {"width": 4, "num_classes": 5}})
  with pytest.raises(ValueError, match=r"model.kwargs.num_classes=5 does not match data set "
                                       r"'digits' and task 'classification', which need 10 "
                                       r"outputs; remove model.kwargs.num_classes .* or set it to 10"):
    train_and_evaluate(config, str(tmp_path / "run"), devices=jax.local_devices()[:2])
  assert not os.path.exists(tmp_path / "run")


def test_labels_out_of_range_in_the_data_are_refused_by_the_loader(monkeypatch):
  read = loader_lib.decode.read_arrays

  def shifted(source, indices, chunk=1024):
    images, labels = read(source, indices, chunk)
    return images, labels + 3  # a data set whose labels run past its 10 classes

  monkeypatch.setattr(loader_lib.decode, "read_arrays", shifted)
  with pytest.raises(ValueError, match=r"has labels 3..12; expected 0..9 for its 10 classes"):
    data.make_loader("digits", "train", batch_size=32, train=True, seed=0,
                     process_index=0, process_count=1)
