"""Variable-size data sets: images resized (shorter side, centre crop) to a chosen image_size."""

import numpy as np
import pytest

from cnnjax import data
from cnnjax.data import sources


def test_resize_and_center_crop_shapes_and_content():
  rng = np.random.default_rng(0)
  for shape in [(300, 500, 3), (500, 300, 3), (64, 64, 1), (20, 30, 3)]:
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    out = sources.resize_and_center_crop(image, 32)
    assert out.shape == (32, 32, shape[2]) and out.dtype == np.uint8
  # A constant image stays constant; a left/right split keeps its sides.
  np.testing.assert_array_equal(sources.resize_and_center_crop(np.full((40, 90, 3), 7, np.uint8), 16), 7)
  split = np.zeros((100, 100, 1), np.uint8)
  split[:, 50:] = 255
  out = sources.resize_and_center_crop(split, 16)[..., 0]
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
