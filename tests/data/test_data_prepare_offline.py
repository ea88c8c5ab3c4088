"""Preparing a TFDS data set without internet stops in seconds with what to do (network simulated)."""

import socket
import time

import pytest
import tensorflow_datasets as tfds

from cnnjax import data
from cnnjax.data import prepare

MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
               "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


@pytest.fixture
def no_download(monkeypatch):
  """Fails the test if TFDS starts downloading or preparing."""
  def refuse(*args, **kwargs):
    raise AssertionError("download_and_prepare was reached")
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", refuse)


def _offline(monkeypatch, calls):
  def unreachable(address, timeout=None, *args, **kwargs):
    calls.append((address, timeout))
    raise OSError(101, "Network is unreachable")
  monkeypatch.setattr(socket, "create_connection", unreachable)


def test_offline_prepare_is_one_message_with_files_folder_and_command(
    tmp_path, monkeypatch, capsys, no_download):
  calls = []
  _offline(monkeypatch, calls)
  data_dir = str(tmp_path / "tfds")
  assert prepare.main(["mnist", "--data_dir", data_dir]) == 2
  err = capsys.readouterr().err
  assert calls == [(("storage.googleapis.com", 443), prepare.CONNECT_TIMEOUT_S)]
  assert err.startswith("error: cannot download data set 'mnist'")
  assert all(name in err for name in MNIST_FILES)
  assert f"python -m cnnjax.data.prepare mnist --data_dir {data_dir} --manual_dir" in err
  assert "Traceback" not in err and err.count("\n") == 2  # One message: text and command.


def test_a_hanging_name_lookup_is_cut_at_the_deadline(tmp_path, monkeypatch, no_download):
  def hang(address, timeout=None, *args, **kwargs):
    time.sleep(10)  # As a resolver without a network can, ignoring the socket timeout.
    raise OSError("name resolution timed out")
  monkeypatch.setattr(socket, "create_connection", hang)
  builder = tfds.builder("mnist", data_dir=str(tmp_path))
  start = time.monotonic()
  with pytest.raises(prepare.DownloadUnavailableError, match=r"within 0.2 s"):
    prepare.check_downloadable("mnist", builder, data_dir=str(tmp_path), manual_dir=None,
                               timeout=0.2)
  assert time.monotonic() - start < 5  # The deadline, not the 10 s hang.


def test_files_in_the_manual_folder_need_no_network(tmp_path, monkeypatch):
  calls = []
  _offline(monkeypatch, calls)
  builder = tfds.builder("mnist", data_dir=str(tmp_path))
  for folder, manual_dir in ((tmp_path / "mine", str(tmp_path / "mine")),
                             (tmp_path / "downloads" / "manual", None)):  # TFDS's default.
    folder.mkdir(parents=True)
    for name in MNIST_FILES:
      (folder / name).write_bytes(b"")
    prepare.check_downloadable("mnist", builder, data_dir=str(tmp_path), manual_dir=manual_dir)
  assert calls == []


def test_a_manual_dir_missing_files_names_them(tmp_path):
  (tmp_path / "files").mkdir()
  (tmp_path / "files" / MNIST_FILES[0]).write_bytes(b"")
  builder = tfds.builder("mnist", data_dir=str(tmp_path))
  with pytest.raises(prepare.DownloadUnavailableError, match=r"lacks t10k-labels-idx1-ubyte.gz, "):
    prepare.check_downloadable("mnist", builder, data_dir=str(tmp_path),
                               manual_dir=str(tmp_path / "files"))


def test_unprepared_error_gives_both_routes(tmp_path):
  data_dir = str(tmp_path / "tfds")
  with pytest.raises(data.DatasetNotPreparedError) as info:
    data.ensure_prepared("mnist", data_dir=data_dir)
  message = str(info.value)
  assert f"With internet:\n  python -m cnnjax.data.prepare mnist --data_dir {data_dir}\n" in message
  assert f"--data_dir {data_dir} --manual_dir /path/to/files" in message
  assert "train-images-idx3-ubyte.gz" in message
