"""The embedded ``digits`` data set: a TFDS builder over scikit-learn's handwritten digits.

scikit-learn ships 1,797 real handwritten digits in its wheel
(``sklearn.datasets.load_digits``, from the UCI "Optical Recognition of
Handwritten Digits" set): 8x8 grey images with values ``0..16`` and labels
``0..9``. ``Digits`` turns them into a TFDS data set stored as ArrayRecord, so
that ``tfds.data_source('digits', ...)`` reads it like any other TFDS data set,
without TensorFlow and without the network.

* Features: ``image`` ``(8, 8, 1) uint8`` PNG, the original ``0..16`` scaled to
  ``0..255`` as ``round(v * 255 / 16)``; ``label`` ``ClassLabel(10)``.
* Splits: a fixed stratified split, ``train`` 1,437 and ``test`` 360 examples
  (``sklearn.model_selection.train_test_split(test_size=360, stratify=labels,
  random_state=0)``); each example's key is its index in ``load_digits``.
  The split's indices ship in ``digits_split.txt`` next to this module and the
  images are read from scikit-learn's ``digits.csv.gz``, so that preparing the
  set does not import scikit-learn (a second or more of imports, in every
  process that prepares it); ``tests/data/test_data_digits.py`` checks both
  against ``load_digits`` and ``train_test_split``.

Preparation takes well under a second; ``prepare_digits`` is safe to call from
several processes at once and after a crash (``cnnjax.data.builders.prepare_builder``).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data.builders import default_data_dir, encode_png, is_prepared, prepare_builder

NAME = "digits"
NUM_TRAIN = 1437
NUM_TEST = 360


def _split_keys() -> dict[str, np.ndarray]:
  """``{'train': (1437,) int64, 'test': (360,) int64}``: the pinned split, in its order."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_split.txt")
  keys: dict[str, list[int]] = {}
  with open(path) as f:
    for line in f:
      if line.startswith("# train:") or line.startswith("# test:"):
        current = keys.setdefault(line[2:].split(":")[0], [])
      elif not line.startswith("#"):
        current.extend(int(v) for v in line.split())
  out = {split: np.asarray(v, np.int64) for split, v in keys.items()}
  if (len(out.get("train", ())), len(out.get("test", ()))) != (NUM_TRAIN, NUM_TEST):
    raise ValueError(f"{path}: expected {NUM_TRAIN} train and {NUM_TEST} test keys")
  return out


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits: images ``(1797, 8, 8) float64`` in ``0..16``, labels ``(1797,) int64``.

  Read from the ``digits.csv.gz`` in scikit-learn's installed package, as
  ``load_digits`` reads it (one row an image, the label last), without
  importing scikit-learn; ``load_digits`` itself if the file is not there.
  """
  spec = importlib.util.find_spec("sklearn")
  for location in (spec.submodule_search_locations or []) if spec is not None else []:
    path = os.path.join(location, "datasets", "data", "digits.csv.gz")
    if os.path.exists(path):
      data = np.loadtxt(path, delimiter=",")
      return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
  from sklearn.datasets import load_digits  # noqa: PLC0415

  digits = load_digits()
  return digits.images, digits.target.astype(np.int64)


def digits_arrays() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The digits as arrays, split as the builder splits them.

  Returns:
    ``{'train': (images, labels, keys), 'test': (...)}`` with ``images``
    ``(N, 8, 8, 1) uint8`` in ``0..255``, ``labels`` ``(N,) int64`` and
    ``keys`` ``(N,)`` the indices into ``sklearn.datasets.load_digits()``.
  """
  raw, labels = _load_digits()
  images = np.round(raw * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return {split: (images[keys], labels[keys], keys) for split, keys in _split_keys().items()}


class Digits(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's 1,797 handwritten 8x8 digits as a TFDS data set (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Stratified train/test split 1,437/360, seed 0."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Handwritten digits shipped with scikit-learn (UCI optdigits test set).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the data ships with scikit-learn.
    arrays = digits_arrays()
    return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

  def _generate_examples(self, images, labels, keys) -> Iterator[tuple[int, dict]]:
    # PNG bytes are passed directly: TFDS's own numpy encoder needs TensorFlow.
    for image, label, key in zip(images, labels, keys):
      yield int(key), {"image": encode_png(image), "label": int(label)}


def prepare_digits(data_dir: str | None = None) -> Digits:
  """Prepares ``digits`` in ``data_dir`` (default ``default_data_dir()``) if needed.

  Returns:
    The prepared builder.
  """
  data_dir = os.path.expanduser(data_dir) if data_dir else default_data_dir()
  builder = Digits(data_dir=data_dir, file_format="array_record")
  if not is_prepared(builder):
    prepare_builder(builder)
    builder = Digits(data_dir=data_dir, file_format="array_record")
  return builder
