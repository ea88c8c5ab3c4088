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

Preparation takes well under a second; ``prepare_digits`` is safe to call from
several processes at once and after a crash (``cnnjax.data.builders.prepare_builder``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data.builders import default_data_dir, encode_png, is_prepared, prepare_builder

NAME = "digits"
NUM_TRAIN = 1437
NUM_TEST = 360
SPLIT_SEED = 0


def digits_arrays() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The digits as arrays, split as the builder splits them.

  Returns:
    ``{'train': (images, labels, keys), 'test': (...)}`` with ``images``
    ``(N, 8, 8, 1) uint8`` in ``0..255``, ``labels`` ``(N,) int64`` and
    ``keys`` ``(N,)`` the indices into ``sklearn.datasets.load_digits()``.
  """
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  digits = load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = digits.target.astype(np.int64)
  keys = np.arange(len(labels))
  train_keys, test_keys = train_test_split(
      keys, test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED)
  return {
      "train": (images[train_keys], labels[train_keys], train_keys),
      "test": (images[test_keys], labels[test_keys], test_keys),
  }


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
