"""``cnnjax.data.prepare`` with TFDS's real ``mnist`` builder, offline, from a manual_dir.

The four MNIST source files are written by the test in their real format
(gzipped IDX: a big-endian header, then uint8 pixels or labels) and placed in
``manual_dir`` under the names TFDS expects, so the builder's own parsing,
encoding and ArrayRecord writing run as they do on the real files. Two things
are cut down so that this takes seconds, not the minute of 70,000 examples:
the builder's example counts (module constants it reads when it splits) and
its checksum table (the sizes and hashes of the real files, which generated
files cannot match), replaced by the counts and hashes of the generated files.
"""

import gzip
import importlib.util
import struct
import urllib.parse

import numpy as np
import pytest

from cnnjax import data

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="preparing a real TFDS builder needs TensorFlow (pip install 'cnnjax[prepare]')")

COUNTS = {"train": 24, "test": 12}


def _write_idx(path, array: np.ndarray) -> None:
  """MNIST's IDX format: magic (0, 0, uint8 type 0x08, rank), one big-endian int32 per dim, the bytes."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _sources(manual_dir):
  """Writes the four files; returns ``{split: (images (n, 28, 28), labels (n,))}``."""
  rng = np.random.default_rng(0)
  out = {}
  for split, prefix in (("train", "train"), ("test", "t10k")):
    n = COUNTS[split]
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    _write_idx(manual_dir / f"{prefix}-images-idx3-ubyte.gz", images)
    _write_idx(manual_dir / f"{prefix}-labels-idx1-ubyte.gz", labels)
    out[split] = images, labels
  return out


@pytest.mark.slow
def test_prepare_real_mnist_builder_from_generated_idx_files(tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # noqa: PLC0415
  from tensorflow_datasets.core.download import checksums  # noqa: PLC0415
  from tensorflow_datasets.image_classification import mnist  # noqa: PLC0415

  from cnnjax.data import prepare  # noqa: PLC0415

  manual = tmp_path / "manual"
  manual.mkdir()
  sources = _sources(manual)
  monkeypatch.setattr(mnist, "_TRAIN_EXAMPLES", COUNTS["train"])
  monkeypatch.setattr(mnist, "_TEST_EXAMPLES", COUNTS["test"])
  infos = {urllib.parse.urljoin(mnist.MNIST.URL, p.name): checksums.compute_url_info(p)
           for p in sorted(manual.iterdir())}
  monkeypatch.setattr(mnist.MNIST, "url_infos", infos)

  data_dir = str(tmp_path / "tfds")
  prepare.prepare("mnist", data_dir=data_dir, manual_dir=str(manual))

  info = data.dataset_info("mnist", data_dir=data_dir)
  assert info.splits == COUNTS and info.image_shape == (28, 28, 1) and info.num_classes == 10
  for split, (images, labels) in sources.items():
    # TFDS shuffles examples when it writes them: compare as multisets.
    source = tfds.data_source("mnist", split=split, data_dir=data_dir)
    got = sorted((int(e["label"]), e["image"][..., 0].tobytes()) for e in source)
    want = sorted((int(y), x.tobytes()) for x, y in zip(images, labels))
    assert got == want, split
  # The training loader reads what was prepared: every test example once, in order.
  source = tfds.data_source("mnist", split="test", data_dir=data_dir)
  batches = list(data.make_loader("mnist", "test", batch_size=8, train=False, seed=0,
                                  data_dir=data_dir, process_index=0, process_count=1))
  assert batches[0]["image"].shape == (8, 28, 28, 1) and batches[0]["image"].dtype == np.float32
  labels = np.concatenate([b["label"][b["mask"]] for b in batches])
  np.testing.assert_array_equal(labels, [int(e["label"]) for e in source])
