"""The embedded digits builder: contents, split, atomic and concurrent preparation, errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax import data
from cnnjax.data import builders
from cnnjax.data import digits as digits_lib
from cnnjax.data import decode
from testlib import killed_preparation_script


def test_info(digits_dir):
  info = data.dataset_info("digits", data_dir=digits_dir)
  assert info == data.DatasetInfo(
      name="digits", image_shape=(8, 8, 1), num_classes=10, splits={"train": 1437, "test": 360})


def test_contents_are_sklearn_digits(digits_dir):
  from sklearn.datasets import load_digits

  digits = load_digits()
  expected = {tuple(np.round(img * 255 / 16).astype(np.uint8).ravel()): int(t)
              for img, t in zip(digits.images, digits.target)}
  seen = []
  for split in ("train", "test"):
    source = tfds.data_source("digits", split=split, data_dir=digits_dir, download=False)
    images, labels = decode.read_arrays(source, range(len(source)))
    assert images.dtype == np.uint8 and images.shape[1:] == (8, 8, 1)
    for img, label in zip(images, labels):
      assert expected[tuple(img.ravel())] == label
    seen.append(labels)
  train, test = seen
  assert len(train) + len(test) == 1797
  # Stratified: every class is ~20% test.
  # ~180 examples a class: stratified rounding moves a class's share by < 1/180 ~ 0.006.
  np.testing.assert_allclose(np.bincount(test, minlength=10) / np.bincount(np.concatenate(seen)), 0.2, atol=0.01)


def test_split_is_fixed():
  a, b = digits_lib.digits_arrays(), digits_lib.digits_arrays()
  assert len(a["train"][0]) == 1437 and len(a["test"][0]) == 360
  np.testing.assert_array_equal(a["test"][2], b["test"][2])
  assert not set(a["train"][2]) & set(a["test"][2])


def test_arrays_are_load_digits_split_by_train_test_split():
  """The pinned split and the CSV read without scikit-learn equal what scikit-learn computes."""
  from sklearn.datasets import load_digits  # noqa: PLC0415
  from sklearn.model_selection import train_test_split  # noqa: PLC0415

  digits = load_digits()
  train_keys, test_keys = train_test_split(
      np.arange(len(digits.target)), test_size=360, stratify=digits.target, random_state=0)
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  arrays = digits_lib.digits_arrays()
  for split, keys in (("train", train_keys), ("test", test_keys)):
    got_images, got_labels, got_keys = arrays[split]
    np.testing.assert_array_equal(got_keys, keys)  # the same examples, in the same order
    np.testing.assert_array_equal(got_images, images[keys])
    np.testing.assert_array_equal(got_labels, digits.target[keys])


def test_prepare_twice_is_a_no_op(digits_dir):
  before = os.path.getmtime(os.path.join(digits_dir, "digits", "1.0.0", "dataset_info.json"))
  data.ensure_prepared("digits", data_dir=digits_dir)
  after = os.path.getmtime(os.path.join(digits_dir, "digits", "1.0.0", "dataset_info.json"))
  assert before == after


_KILLED = killed_preparation_script(after=500)


@pytest.mark.slow
def test_killed_preparation_is_never_read_and_is_redone(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path)], env=env, capture_output=True)
  assert proc.returncode == -9, proc.stderr.decode()[-2000:]
  leftovers = os.listdir(tmp_path / "digits")
  assert leftovers and all(x.startswith("incomplete.") for x in leftovers), leftovers
  assert not builders.is_prepared(digits_lib.Digits(data_dir=str(tmp_path)))
  data.ensure_prepared("digits", data_dir=str(tmp_path))
  assert os.listdir(tmp_path / "digits") == ["1.0.0"]  # the leftover is gone
  assert data.dataset_info("digits", data_dir=str(tmp_path)).splits == {"train": 1437, "test": 360}


_PREPARE = "import sys; from cnnjax import data; data.ensure_prepared('digits', data_dir=sys.argv[1]); print('ok')"


@pytest.mark.slow
def test_concurrent_preparation(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  procs = [subprocess.Popen([sys.executable, "-c", _PREPARE, str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
  for p in procs:
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()[-2000:]
  assert os.listdir(tmp_path / "digits") == ["1.0.0"]
  source = tfds.data_source("digits", split="test", data_dir=str(tmp_path), download=False)
  assert len(source) == 360 and source[0]["image"].shape == (8, 8, 1)


def test_unprepared_tfds_names_the_command(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError) as e:
    data.ensure_prepared("mnist", data_dir=str(tmp_path))
  assert f"python -m cnnjax.data.prepare mnist --data_dir {tmp_path}" in str(e.value)
  assert isinstance(e.value, ValueError)
  with pytest.raises(data.DatasetNotPreparedError, match="cnnjax.data.prepare cifar10"):
    data.make_loader("cifar10", "train", batch_size=2, train=True, seed=0, data_dir=str(tmp_path))


def test_unknown_name_lists_known_names(tmp_path):
  with pytest.raises(ValueError, match=r"unknown data set 'no_such_set'.*\[.*'digits'.*\]"):
    data.ensure_prepared("no_such_set", data_dir=str(tmp_path))


def test_prepare_cli_embedded(tmp_path, capsys):
  from cnnjax.data import prepare

  assert prepare.main(["digits", "--data_dir", str(tmp_path)]) == 0
  assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "digits" / "1.0.0")


def test_preparing_digits_prints_no_download_lines(tmp_path, capsys):
  from tensorflow_datasets.core.utils import tqdm_utils
  before = tqdm_utils._active
  digits_lib.prepare_digits(str(tmp_path))
  captured = capsys.readouterr()
  assert "Downloading and preparing" not in captured.out + captured.err
  assert "Unknown size" not in captured.out + captured.err
  assert tqdm_utils._active == before  # The user's TFDS progress-bar setting is left as it was.
