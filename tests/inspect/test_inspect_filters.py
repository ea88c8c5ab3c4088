"""Filter pictures and the hand-crafted filters of the course material."""

import matplotlib.image
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cnnjax import inspect as ci
from testlib import assert_close


def test_cross_detector_matches_the_material():
  # The material's 5x5 cross image and kernel_cs; its apply_filter (and
  # nn.Conv2d with that kernel) prints this 3x3 feature map: the cross
  # itself gives 5 (all five positive weights on ones, no negative weight hit).
  response = ci.apply_filter(ci.cross_image(), ci.hand_crafted_filters()["cross"])
  expected = np.array([[0, -1, 1],
                       [-1, 1, 0],
                       [1, 0, 5]], np.float32)
  np.testing.assert_array_equal(response, expected)


def test_cross_image_is_the_material_image():
  expected = np.array([[0, 0, 0, 0, 0],
                       [0, 0, 0, 0, 0],
                       [0, 0, 0, 1, 0],
                       [0, 0, 1, 1, 1],
                       [0, 0, 0, 1, 0]], np.float32)
  np.testing.assert_array_equal(ci.cross_image(), expected)


def test_hand_crafted_kernels():
  k = ci.hand_crafted_filters()
  assert set(k) == {"gaussian_blur", "sobel_x", "sobel_y", "cross"}
  assert all(v.shape == (3, 3) and v.dtype == np.float32 for v in k.values())
  assert k["gaussian_blur"].sum() == pytest.approx(1.0)  # 9 float32 weights: 1e-6 relative
  np.testing.assert_array_equal(k["sobel_x"], k["sobel_y"].T)
  assert k["sobel_x"].sum() == 0 and k["sobel_y"].sum() == 0


def test_filters_on_a_real_image():
  image = ci.sample_image()
  assert image.ndim == 3 and image.shape[-1] == 3 and image.max() > 100
  grey = image.mean(-1)
  k = ci.hand_crafted_filters()
  blur = ci.apply_filter(image, k["gaussian_blur"])
  assert blur.shape == (grey.shape[0] - 2, grey.shape[1] - 2)
  # Blurring keeps the mean brightness and lowers the variation between neighbours.
  # Only the border rows differ between the two means: 1% of the mean brightness.
  assert blur.mean() == pytest.approx(grey[1:-1, 1:-1].mean(), rel=1e-2)
  assert np.abs(np.diff(blur, axis=1)).mean() < np.abs(np.diff(grey, axis=1)).mean()
  # A step along x is a vertical edge: Sobel x responds (4 = 1 + 2 + 1), Sobel y does not.
  step_x = np.zeros((6, 6), np.float32)
  step_x[:, 3:] = 1
  assert np.abs(ci.apply_filter(step_x, k["sobel_x"])).max() == 4
  assert np.abs(ci.apply_filter(step_x, k["sobel_y"])).max() == 0
  # The same 9 products summed in another order: relative to the largest response.
  assert_close(ci.apply_filter(grey[:50, :60], k["sobel_y"]),
               ci.apply_filter(grey[:50, :60].T, k["sobel_x"]).T, rtol=1e-5)


@given(hnp.arrays(np.float32, (3, 2, 2, 5), elements=st.floats(-10, 10, width=32)))
def test_normalize_filters_minmax_per_filter(kernel):
  tiles = ci.normalize_filters(kernel)
  assert tiles.shape == (5, 3, 2, 2)
  assert tiles.min() >= 0 and tiles.max() <= 1
  for o in range(5):
    if np.ptp(kernel[..., o]) > 1e-3:
      assert tiles[o].min() == 0 and tiles[o].max() == pytest.approx(1)  # min-max scaled: a few eps32
      w = kernel[..., o].astype(np.float64)
      # Values in [0, 1] scaled in float32 vs float64: eps32 x max|w| / ptp, ~1e-6 here.
      np.testing.assert_allclose(tiles[o], (w - w.min()) / (w.max() - w.min()), atol=1e-5)


def test_make_grid_layout():
  images = np.zeros((5, 2, 3, 1), np.float32)
  images[4] = 0.5
  grid = ci.make_grid(images, ncols=2, padding=1, pad_value=1.0)
  assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 1)
  np.testing.assert_array_equal(grid[7:9, 1:4, 0], 0.5)  # Image 4: row 2, column 0.
  assert grid[0].min() == 1.0  # Padding row.


def test_plot_filters_rgb_and_grey(tmp_path):
  rng = np.random.default_rng(0)
  rgb = ci.plot_filters(rng.normal(size=(5, 5, 3, 8)).astype(np.float32), tmp_path / "rgb.png")
  grey = ci.plot_filters(rng.normal(size=(3, 3, 4, 6)).astype(np.float32), tmp_path / "grey.png")
  for path in (rgb, grey):
    picture = matplotlib.image.imread(path)
    assert picture.ndim == 3 and picture.shape[0] > 100
  assert ci.filter_grid(rng.normal(size=(5, 5, 3, 8)).astype(np.float32)).shape[-1] == 3
  # Grey: one row per filter, one column per input channel.
  grid = ci.filter_grid(rng.normal(size=(3, 3, 4, 6)).astype(np.float32))
  assert grid.shape == (6 * 4 + 1, 4 * 4 + 1, 1)


def test_plot_filter_kernels(tmp_path):
  kernel = np.random.default_rng(1).normal(size=(3, 3, 16, 4)).astype(np.float32)
  path = ci.plot_filter_kernels(kernel, 3, tmp_path / "k.png")
  assert matplotlib.image.imread(path).shape[0] > 100
  with pytest.raises(ValueError, match=r"index must be an int in \[0, 4\)"):
    ci.plot_filter_kernels(kernel, 4, tmp_path / "bad.png")


def test_plot_hand_crafted(tmp_path):
  path = ci.plot_hand_crafted(ci.sample_image()[::4, ::4], tmp_path / "hand.png")
  assert matplotlib.image.imread(path).shape[1] > 500


def test_kernel_errors_name_the_layout():
  with pytest.raises(ValueError, match=r"\(kH, kW, C_in, C_out\).*transpose\(2, 3, 1, 0\)"):
    ci.normalize_filters(np.zeros((3, 3, 3), np.float32))
  with pytest.raises(TypeError, match="floating"):
    ci.normalize_filters(np.zeros((3, 3, 1, 2), np.int32))
  with pytest.raises(ValueError, match=r"\(kH, kW\)"):
    ci.apply_filter(np.zeros((5, 5)), np.zeros((3, 3, 1)))
