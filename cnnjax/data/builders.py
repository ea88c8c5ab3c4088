"""Preparing TFDS builders offline, shared by every data set of ``cnnjax.data``.

* ``default_data_dir()``: where TFDS keeps prepared sets (``$TFDS_DATA_DIR``).
* ``is_prepared(builder)`` / ``prepare_builder(builder)``: an embedded builder
  (``digits``, ``digit_scenes``, ``digits_rotation``) prepared as ArrayRecord,
  safe from several processes at once and after a crash: an ``fcntl`` lock
  (``file_lock``) is held while preparing, and TFDS writes into
  ``<data_dir>/<name>/incomplete.<random suffix>_<version>`` and renames it
  only at the end, so a process killed mid-write leaves no directory a reader
  would open; the next call removes the leftover and prepares again.
* ``encode_png(image)``: the PNG bytes the embedded builders yield (Pillow, no
  TensorFlow).
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


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a ``(H, W, 1) uint8`` image, encoded with Pillow (no TensorFlow)."""
  from PIL import Image

  buffer = io.BytesIO()
  Image.fromarray(image[..., 0], mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


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
