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

Preparation takes well under a second. ``prepare_digits`` makes it safe to call
from several processes at once and after a crash: it holds an ``fcntl`` lock
while preparing, and TFDS writes into ``<data_dir>/digits/incomplete.<random suffix>_1.0.0``
and renames it to ``<data_dir>/digits/1.0.0`` only at the end, so a process
killed mid-write leaves no directory that a reader would open; the next call
removes the leftover and prepares again.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import shutil
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

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


def _png(image: np.ndarray) -> bytes:
  """PNG bytes of a ``(H, W, 1) uint8`` image, encoded with Pillow (no TensorFlow)."""
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(image[..., 0], mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


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
      yield int(key), {"image": _png(image), "label": int(label)}


def default_data_dir() -> str:
  """``$TFDS_DATA_DIR`` if set, else ``~/tensorflow_datasets`` (TFDS's default)."""
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
  """Holds an exclusive ``fcntl`` lock on ``path`` (created if missing)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether the builder's version directory is complete (TFDS renames it in last)."""
  return (builder.data_path / "dataset_info.json").exists()


def prepare_builder(builder: tfds.core.DatasetBuilder) -> None:
  """Prepares an embedded builder as ArrayRecord, under a lock, cleaning killed attempts.

  Safe for concurrent callers: the first prepares, the others wait on the lock
  and then find it prepared.
  """
  root = os.fspath(builder.data_dir_root)
  lock = os.path.join(root, f".{builder.name}.lock")
  with file_lock(lock):
    if is_prepared(builder):
      return
    dataset_dir = os.path.join(root, builder.name)
    if os.path.isdir(dataset_dir):
      # Left by a preparation that was killed: nobody else holds the lock, so
      # nobody is writing there.
      for entry in os.listdir(dataset_dir):
        if entry.startswith("incomplete."):
          shutil.rmtree(os.path.join(dataset_dir, entry), ignore_errors=True)
    with _quiet_tfds():
      builder.download_and_prepare(
          file_format="array_record",
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's "Downloading and preparing dataset Unknown size" lines and bars.

  They describe a download that embedded builders never make; the preparation
  takes about a second. TFDS's progress-bar setting is restored afterwards.
  """
  from tensorflow_datasets.core.utils import tqdm_utils  # noqa: PLC0415

  active = tqdm_utils._active
  tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    tfds.display_progress_bar(active)


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
