"""TFDS data sets by name, with ``tfds.testing.mock_data`` standing in for prepared files.

Preparing a real builder from source files: test_data_prepare_mnist.py.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax import data


def _metadata(tmp_path, name, num_examples):
  """Writes the dataset_info.json a prepared ArrayRecord data set has (no records)."""
  builder = tfds.builder(name, data_dir=str(tmp_path), file_format="array_record")
  splits = [tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0,
                                filename_template=tfds.core.ShardedFileTemplate(
                                    data_dir=builder.data_path, template="{SPLIT}", dataset_name=name,
                                    split=s, filetype_suffix="array_record"))
            for s in ("train", "test")]
  builder.info.set_splits(tfds.core.SplitDict(splits))
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)
  return str(tmp_path)


class _Examples:
  """Random examples shaped by a builder's features, like mock_data's, with a working ``__getitems__``.

  (mock_data's own array_record mock binds ``__getitems__`` without ``self`` in TFDS 4.9.10.)
  """

  def __init__(self, features, n):
    self.shape, self.classes, self.n = features["image"].shape, features["label"].num_classes, n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    rng = np.random.default_rng(i)
    return {"image": rng.integers(0, 256, self.shape, dtype=np.uint8),
            "label": np.int64(rng.integers(self.classes))}  # int64, as mock_data's labels

  def __getitems__(self, indices):
    return [self[i] for i in indices]


def _as_data_source(builder, split, decoders=None, deserialize_method=None):
  del decoders, deserialize_method
  assert split in ("train", "test"), split
  return _Examples(builder.info.features, 24)


@pytest.mark.parametrize("name, shape, classes", [
    ("mnist", (28, 28, 1), 10), ("fashion_mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10)])
def test_mocked_tfds(tmp_path, name, shape, classes):
  data_dir = _metadata(tmp_path, name, 24)
  with tfds.testing.mock_data(num_examples=24, data_dir=data_dir, policy=tfds.testing.MockPolicy.USE_FILES,
                               as_data_source_fn=_as_data_source):
    info = data.dataset_info(name, data_dir=data_dir)
    assert info == data.DatasetInfo(name, shape, classes, {"train": 24, "test": 24})
    train = data.make_loader(name, "train", batch_size=8, train=True, seed=0, data_dir=data_dir,
                             process_index=0, process_count=1)
    batch = next(iter(train))
    assert batch["image"].shape == (8, *shape) and batch["image"].dtype == np.float32
    assert batch["label"].dtype == np.int32 and batch["label"].max() < classes
    grain = data.make_loader(name, "train", batch_size=8, train=True, seed=0, data_dir=data_dir,
                             pipeline="grain", process_index=0, process_count=1)
    np.testing.assert_array_equal(next(iter(grain))["image"], batch["image"])
    test = data.make_loader(name, "test", batch_size=10, train=False, seed=0, data_dir=data_dir,
                            process_index=0, process_count=1)
    assert [b["mask"].sum() for b in test] == [10, 10, 4]


def test_tfrecord_files_are_refused(tmp_path):
  builder = tfds.builder("mnist", data_dir=str(tmp_path))  # the TFDS default, tfrecord
  builder.data_path.mkdir(parents=True)
  builder.info.write_to_directory(builder.data_path)
  with pytest.raises(data.DatasetNotPreparedError, match="expected array_record"):
    data.ensure_prepared("mnist", data_dir=str(tmp_path))
