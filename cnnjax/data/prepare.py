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

Without internet, preparation stops within seconds (one connection attempt
per download host, ``CONNECT_TIMEOUT_S`` each, before anything is downloaded)
with ``DownloadUnavailableError``: which files to place, in which folder,
and the ``--manual_dir`` command that prepares them.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

#: Seconds to wait for a TCP connection to a download host before calling it unreachable.
CONNECT_TIMEOUT_S = 2.0


class DownloadUnavailableError(ValueError):
  """A data set's source files can neither be downloaded nor found in a manual_dir; says how to place them."""


def source_files(builder: Any) -> dict[str, str]:
  """``{url: file name}`` of what ``builder`` downloads (its TFDS checksums); ``{}`` if unknown."""
  try:
    infos = builder.url_infos or {}
  except Exception:  # noqa: BLE001  (a builder without a checksums file)
    infos = {}
  return {url: (info.filename or os.path.basename(urllib.parse.urlparse(url).path))
          for url, info in sorted(infos.items())}


def default_manual_dir(data_dir: str, download_dir: str | None = None) -> str:
  """The folder TFDS reads source files from when no ``--manual_dir`` is given."""
  return os.path.join(os.path.expanduser(download_dir) if download_dir
                      else os.path.join(data_dir, "downloads"), "manual")


def offline_instructions(name: str, builder: Any, data_dir: str | None) -> str:
  """How to prepare ``name`` without internet: the files, a folder, and the command."""
  files = sorted(set(source_files(builder).values()))
  folder = "/path/to/files"
  command = f"python -m cnnjax.data.prepare {shlex.quote(name)}"
  if data_dir:
    command += f" --data_dir {shlex.quote(os.fspath(data_dir))}"
  command += f" --manual_dir {folder}"
  what = (f"the files {', '.join(files)}" if files
          else "the files the TFDS catalogue page of the data set lists")
  return (f"copy {what} (as downloaded, under these names) into a folder such as {folder}, "
          f"then run:\n  {command}")


def _unreachable_hosts(urls: Sequence[str], timeout: float) -> list[str]:
  """The ``host:port`` of each URL that no TCP connection reaches within ``timeout`` seconds.

  The attempts run in daemon threads under one deadline, because name
  resolution ignores the socket timeout and can hang on a machine without a
  network (a daemon thread left hanging does not delay the exit).
  """
  targets = []
  for netloc in sorted({urllib.parse.urlparse(u).netloc for u in urls}):
    parsed = urllib.parse.urlparse(f"//{netloc}")
    https = any(urllib.parse.urlparse(u).netloc == netloc and u.startswith("https:") for u in urls)
    targets.append((parsed.hostname, parsed.port or (443 if https else 80)))
  reached: set[tuple[str, int]] = set()

  def attempt(target: tuple[str, int]) -> None:
    try:
      socket.create_connection(target, timeout=timeout).close()
    except OSError:
      return
    reached.add(target)

  threads = [threading.Thread(target=attempt, args=(t,), daemon=True) for t in targets]
  for thread in threads:
    thread.start()
  deadline = time.monotonic() + timeout
  for thread in threads:
    thread.join(max(0.0, deadline - time.monotonic()))
  return [f"{host}:{port}" for host, port in targets if (host, port) not in reached]


def check_downloadable(name: str, builder: Any, *, data_dir: str, manual_dir: str | None,
                       download_dir: str | None = None,
                       timeout: float = CONNECT_TIMEOUT_S) -> None:
  """Raises ``DownloadUnavailableError`` if ``builder``'s files are neither local nor reachable.

  Files already in the manual folder (``manual_dir``, else TFDS's default
  ``<data_dir>/downloads/manual``) need no network. Otherwise each download
  host gets one TCP connection attempt of ``timeout`` seconds, so a machine
  without internet learns it in seconds instead of minutes of retries.
  """
  files = source_files(builder)
  folder = os.path.expanduser(manual_dir) if manual_dir else default_manual_dir(data_dir, download_dir)
  missing = {url: f for url, f in files.items() if not os.path.exists(os.path.join(folder, f))}
  if manual_dir and missing:
    raise DownloadUnavailableError(
        f"--manual_dir {manual_dir} lacks {', '.join(sorted(missing.values()))} for data set "
        f"{name!r}; place them there under these names")
  if not missing:
    return
  unreachable = _unreachable_hosts(list(missing), timeout)
  if unreachable:
    raise DownloadUnavailableError(
        f"cannot download data set {name!r}: no connection to {', '.join(unreachable)} within "
        f"{timeout:g} s (no internet?). To prepare it offline, "
        f"{offline_instructions(name, builder, data_dir)}")


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

  Raises:
    DownloadUnavailableError: the source files are not in the manual folder
      and their hosts cannot be reached (the message says what to place where).
    ValueError: an unknown data set name.
  """
  import tensorflow_datasets as tfds

  from cnnjax.data import builders
  from cnnjax.data import sources

  data_dir = os.path.expanduser(data_dir) if data_dir else builders.default_data_dir()
  if name in sources.EMBEDDED:
    builder = sources.EMBEDDED[name](data_dir=data_dir, file_format="array_record")
    builders.prepare_builder(builder)
    return os.fspath(builder.data_path)
  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f"unknown TFDS data set {name!r}; see tfds.list_builders()") from None
  if not builders.is_prepared(builder):
    check_downloadable(name, builder, data_dir=data_dir, manual_dir=manual_dir,
                       download_dir=download_dir)
  config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None,
      try_download_gcs=False)
  lock = os.path.join(data_dir, f".{builder.name}.lock")
  with builders.file_lock(lock):
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
  except DownloadUnavailableError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except ModuleNotFoundError as e:
    if e.name and e.name.split(".")[0] == "tensorflow":
      print(f"preparing {args.name!r} needs TensorFlow: pip install 'cnnjax[prepare]'", file=sys.stderr)
      return 2
    raise
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
