"""Prepares a TFDS data set as ArrayRecord, the format ``cnnjax.data`` reads.

Usage::

    python -m cnnjax.data.prepare mnist --data_dir ~/tensorflow_datasets
    python -m cnnjax.data.prepare imagenet2012 --manual_dir ~/downloads/imagenet
    python -m cnnjax.data.prepare digits        # the embedded set, offline

Real TFDS builders need TensorFlow to prepare (``pip install 'cnnjax[prepare]'``)
and either the internet or the source files in ``--manual_dir`` (TFDS's
``DownloadConfig(manual_dir=...)``: put the files the builder would download,
under their original names, e.g. ``train-images-idx3-ubyte.gz`` for MNIST,
``cifar-10-binary.tar.gz`` for CIFAR-10, ``ILSVRC2012_img_train.tar`` for
ImageNet). Reading the prepared files needs neither.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def prepare(
    name: str,
    *,
    data_dir: str | None = None,
    manual_dir: str | None = None,
    download_dir: str | None = None,
) -> str:
  """Prepares ``name`` in ``data_dir`` as ArrayRecord; returns the version directory.

  Args:
    name: TFDS builder name (``'mnist'``, ``'cifar10:3.0.2'``) or ``'digits'``.
    data_dir: default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    manual_dir: folder of pre-downloaded source files (offline preparation).
    download_dir: where downloads go; default ``<data_dir>/downloads``.
  """
  import tensorflow_datasets as tfds

  from cnnjax.data import digits as digits_lib
  from cnnjax.data import sources

  data_dir = os.path.expanduser(data_dir) if data_dir else digits_lib.default_data_dir()
  if name in sources.EMBEDDED:
    builder = sources.EMBEDDED[name](data_dir=data_dir, file_format="array_record")
    digits_lib.prepare_builder(builder)
    return os.fspath(builder.data_path)
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"unknown TFDS data set {name!r}; see tfds.list_builders()") from None
  config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None,
      try_download_gcs=False)
  lock = os.path.join(data_dir, f".{builder.name}.lock")
  with digits_lib.file_lock(lock):
    builder.download_and_prepare(
        download_dir=os.path.expanduser(download_dir) if download_dir else None,
        download_config=config, file_format="array_record")
  return os.fspath(builder.data_path)


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m cnnjax.data.prepare", description=__doc__.split("\n\n")[0])
  parser.add_argument("name", help="TFDS data set name, e.g. mnist, cifar10, or digits")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data directory (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
  parser.add_argument("--manual_dir", default=None,
                      help="folder of pre-downloaded source files, for a machine without internet")
  parser.add_argument("--download_dir", default=None, help="download cache (default <data_dir>/downloads)")
  args = parser.parse_args(argv)
  try:
    path = prepare(args.name, data_dir=args.data_dir, manual_dir=args.manual_dir,
                   download_dir=args.download_dir)
  except ModuleNotFoundError as e:
    if e.name and e.name.split(".")[0] == "tensorflow":
      print(f"preparing {args.name!r} needs TensorFlow: pip install 'cnnjax[prepare]'", file=sys.stderr)
      return 2
    raise
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
