"""Variable-size data sets: training crops of the whole image, centred evaluation, at a chosen image_size."""

import numpy as np
import pytest
from PIL import Image

from cnnjax import data
from cnnjax.data import decode


def test_resize_and_center_crop_shapes_and_content():
  rng = np.random.default_rng(0)
  for shape in [(300, 500, 3), (500, 300, 3), (64, 64, 1), (20, 30, 3)]:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    out = decode.resize_and_center_crop(image, 32)
    assert out.shape == (32, 32, shape[2]) and out.dtype == np.uint8
  # A constant image stays constant; a left/right split keeps its sides.
  np.testing.assert_array_equal(decode.resize_and_center_crop(np.full((40, 90, 3), 7, np.uint8), 16), 7)
  split = np.zeros((100, 100, 1), np.uint8)
  split[:, 50:] = 255
  out = decode.resize_and_center_crop(split, 16)[..., 0]
  assert np.all(out[:, :6] == 0) and np.all(out[:, -6:] == 255)


def test_variable_size_info_requires_image_size():
  info = data.DatasetInfo("toy", (None, None, 3), 10, {"train": 5})
  assert info.variable_size
  with pytest.raises(ValueError, match=r"variable size \(None, None, 3\).*image_size"):
    info.resized(None)
  assert info.resized(224).image_shape == (224, 224, 3)


def test_loader_resizes_fixed_size_sets_too(digits_dir):
  loader = data.make_loader("digits", "test", batch_size=16, train=False, seed=0,
                            data_dir=digits_dir, image_size=16)
  batch = next(iter(loader))
  assert batch["image"].shape == (16, 16, 16, 1)
  assert loader.info.image_shape == (16, 16, 1)
  assert data.dataset_info("digits", data_dir=digits_dir, image_size=16).image_shape == (16, 16, 1)


def test_random_resized_crop_boxes_reach_every_border_within_their_bounds():
  rng = np.random.default_rng(0)
  boxes = np.array([decode.random_resized_crop_box(rng, 30, 50, (0.08, 1.0)) for _ in range(2000)])
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all() and (top + h <= 30).all() and (left + w <= 50).all()
  # Every border is reached: crops are placed uniformly where they fit.
  assert top.min() == 0 and left.min() == 0 and (top + h).max() == 30 and (left + w).max() == 50
  area = h * w / (30 * 50)
  assert area.min() >= 0.08 * 0.9 and area.max() <= 1.0  # 0.9: rounding of h and w
  # An image far outside the aspect range falls back to its largest centred allowed box.
  assert decode.random_resized_crop_box(np.random.default_rng(1), 4, 400, (0.9, 1.0)) == (0, 197, 4, 5)


def _ramp_folder(root):
  """Two grey images of other sizes whose pixels are 8 x their column: 0 at the left border."""
  for cls, (h, w) in {"a": (20, 30), "b": (24, 18)}.items():
    (root / cls).mkdir(parents=True)
    ramp = np.broadcast_to(8 * np.arange(w, dtype=np.uint8), (h, w))
    for i in range(2):
      Image.fromarray(np.ascontiguousarray(ramp), mode="L").save(root / cls / f"{i}.png")
  return root


def test_a_variable_size_set_trains_on_crops_of_the_whole_image_and_evaluates_centred(tmp_path):
  root = _ramp_folder(tmp_path / "ramps")
  dataset = data.Dataset(f"folder:{root}", image_size=8)
  assert dataset.info.image_shape == (8, 8, 1)
  index = next(i for i, label in enumerate(dataset.source("train").source.labels) if label == 0)
  train = dataset.source("train", train=True, seed=3)
  crops = [train.for_epoch(epoch)[index]["image"][..., 0].astype(int) for epoch in range(200)]
  assert all(c.shape == (8, 8) for c in crops)
  # The same (seed, epoch, index) gives the same crop; other epochs give others.
  np.testing.assert_array_equal(train.for_epoch(7)[index]["image"], crops[7][..., None])
  # (A ramp shows only where a crop starts and how wide it is: fewer distinct images.)
  assert len({c.tobytes() for c in crops}) > 50
  # Training crops reach the image's left and right borders (0 and 8 * 29 = 232; the
  # resize averages a few columns at the edge); the centre crop of evaluation does not.
  assert min(c[:, 0].min() for c in crops) < 24 and max(c[:, -1].max() for c in crops) > 208
  centre = dataset.source("train")[index]["image"][..., 0].astype(int)
  assert centre[:, 0].min() > 40 and centre[:, -1].max() < 192
  # The loaders: crops in training, the same centred batch in every evaluation pass.
  loader = data.make_loader(dataset, "train", batch_size=2, train=True, seed=3,
                            process_index=0, process_count=1)
  assert isinstance(loader._source, decode.RandomResizedCrops)
  evaluation = data.make_loader(dataset, "train", batch_size=2, train=False, seed=3,
                                process_index=0, process_count=1)
  np.testing.assert_array_equal(list(evaluation)[0]["image"], list(evaluation)[0]["image"])
  assert isinstance(evaluation._source, decode.CenterCrops)


@pytest.mark.parametrize("pipeline", ["memory", "grain"])
def test_both_pipelines_give_the_same_training_crops(tmp_path, pipeline):
  root = _ramp_folder(tmp_path / "ramps")
  dataset = data.Dataset(f"folder:{root}", image_size=8)
  kw = dict(batch_size=2, train=True, seed=1, process_index=0, process_count=1)
  reference = data.make_loader(dataset, "train", pipeline="memory", **kw)
  loader = data.make_loader(dataset, "train", pipeline=pipeline, **kw)
  steps = 3 * reference.steps_per_epoch  # three epochs: new crops each
  a = [b["image"] for _, b in zip(range(steps), reference)]
  b = [b["image"] for _, b in zip(range(steps), loader)]
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], a[reference.steps_per_epoch])
