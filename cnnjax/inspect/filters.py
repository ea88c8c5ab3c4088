"""Pictures of convolution filters, and hand-crafted filters applied to a real image.

A learned first-layer kernel ``(kH, kW, C_in, C_out)`` is shown as one tile
per filter: an RGB tile when ``C_in = 3``, otherwise one grey tile per input
channel. Each filter is min-max normalised to ``[0, 1]`` on its own (all its
channels together), as ``torchvision.utils.make_grid(normalize=True)`` does, so
that the pattern of every filter is visible whatever its scale. Deeper
filters have too many channels to read as colour; ``plot_filter_kernels``
shows the ``C_in`` kernels of one of them side by side.

Classic hand-crafted filters (a 3x3 Gaussian blur, the Sobel kernels and a
cross detector) are applied with ``cnnjax.ops.conv``, which is a
cross-correlation (the kernel is not flipped), as in every deep-learning
framework.

Pictures are written as PNG with matplotlib's Agg canvas (no display and no
global backend switch).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from cnnjax import ops

ArrayLike = Any


def _as_numpy(x: ArrayLike, what: str) -> np.ndarray:
  if not hasattr(x, "shape"):
    raise TypeError(f"{what} must be an array, got {type(x).__name__}")
  return np.asarray(x)


def _check_kernel(kernel: ArrayLike, what: str = "kernel") -> np.ndarray:
  """A 2-D convolution kernel ``(kH, kW, C_in, C_out)`` as float32 numpy."""
  kernel = _as_numpy(kernel, what)
  if kernel.ndim != 4:
    raise ValueError(
        f"{what} must be a 2-D convolution kernel (kH, kW, C_in, C_out) (HWIO), got shape "
        f"{kernel.shape} (rank {kernel.ndim}); a PyTorch weight (C_out, C_in, kH, kW) "
        f"becomes HWIO with w.transpose(2, 3, 1, 0)")
  if not np.issubdtype(kernel.dtype, np.floating):
    raise TypeError(f"{what} must be floating, got dtype {kernel.dtype}")
  return kernel.astype(np.float32)


def minmax(x: np.ndarray, axes: Sequence[int] | None = None) -> np.ndarray:
  """Rescales ``x`` to ``[0, 1]`` over ``axes`` (all axes by default); a constant becomes 0.5."""
  x = np.asarray(x, np.float32)
  lo = x.min(axis=axes, keepdims=True)
  hi = x.max(axis=axes, keepdims=True)
  span = hi - lo
  return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 0.5).astype(np.float32)


def normalize_filters(kernel: ArrayLike) -> np.ndarray:
  """One picture per filter, each min-max normalised to ``[0, 1]`` on its own.

  Args:
    kernel: ``(kH, kW, C_in, C_out)`` (HWIO).

  Returns:
    ``(C_out, kH, kW, C_in)`` float32 in ``[0, 1]``: filter ``o`` is
    ``kernel[..., o]`` rescaled by its own minimum and maximum.
  """
  kernel = _check_kernel(kernel)
  return minmax(np.moveaxis(kernel, -1, 0), axes=(1, 2, 3))


def make_grid(
    images: ArrayLike, *, ncols: int | None = None, padding: int = 1, pad_value: float = 1.0
) -> np.ndarray:
  """Tiles images into one picture, as ``torchvision.utils.make_grid`` (channels last).

  Args:
    images: ``(N, H, W, C)`` with ``C`` 1 or 3 (or ``(N, H, W)``), values in ``[0, 1]``.
    ncols: tiles per row; default ``ceil(sqrt(N))``.
    padding: pixels between tiles and around the grid.
    pad_value: value of the padding.

  Returns:
    ``(rows * (H + padding) + padding, ncols * (W + padding) + padding, C)``.
  """
  images = _as_numpy(images, "images").astype(np.float32)
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f"images must be a non-empty (N, H, W, C) array, got shape {images.shape}")
  n, h, w, c = images.shape
  ncols = int(ncols or np.ceil(np.sqrt(n)))
  if ncols < 1:
    raise ValueError(f"ncols must be positive, got {ncols}")
  rows = int(np.ceil(n / ncols))
  grid = np.full((rows * (h + padding) + padding, ncols * (w + padding) + padding, c),
                 pad_value, np.float32)
  for i in range(n):
    r, q = divmod(i, ncols)
    top, left = padding + r * (h + padding), padding + q * (w + padding)
    grid[top:top + h, left:left + w] = images[i]
  return grid


def save_image(image: np.ndarray, path: str | os.PathLike, *, title: str | None = None,
               cmap: str = "gray", scale: float = 1.0) -> str:
  """Writes an ``(H, W)`` or ``(H, W, 1 | 3)`` image in ``[0, 1]`` as a PNG with an optional title.

  ``scale`` multiplies the figure size (inches per 100 pixels, at least 3).
  Returns the path written.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
  from matplotlib.figure import Figure  # noqa: PLC0415

  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  h, w = image.shape[:2]
  size = max(4.0, scale * max(h, w) / 40)
  width = max(4.0, size * w / max(h, w) + 0.2)
  # Each line of the title wrapped on its own, with room above the image for all of them.
  lines = [wrapped for part in (title or "").split("\n")
           for wrapped in (textwrap.wrap(part, int(width * 11), break_on_hyphens=False,
                                          break_long_words=False) or [""])] if title else []
  head = 0.25 + 0.2 * len(lines) if lines else 0.0
  height = max(2.0, size * h / max(h, w)) + (head if lines else 0.2)
  fig = Figure(figsize=(width, height))
  FigureCanvasAgg(fig)
  top = head / height if lines else 0.02
  ax = fig.add_axes((0.02, 0.02, 0.96, 1 - 0.02 - top))
  ax.imshow(np.clip(image, 0, 1), cmap=None if image.ndim == 3 else cmap, vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_axis_off()
  if lines:
    fig.suptitle("\n".join(lines), fontsize=9)
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path


def filter_grid(kernel: ArrayLike, *, max_filters: int = 64, max_channels: int = 16,
                ncols: int | None = None) -> np.ndarray:
  """The picture ``plot_filters`` draws, as an array in ``[0, 1]``.

  ``C_in = 3``: one RGB tile per filter (``ncols`` per row). Otherwise one
  grey tile per (filter, input channel): a row per filter, a column per
  channel (the first ``max_channels``).

  Returns:
    ``(H, W, 3)`` for RGB filters, ``(H, W, 1)`` otherwise.
  """
  tiles = normalize_filters(kernel)[:max_filters]
  if tiles.shape[-1] == 3:
    return make_grid(tiles, ncols=ncols)
  n, kh, kw, c = tiles.shape
  c = min(c, max_channels)
  per_channel = np.moveaxis(tiles[..., :c], -1, 1).reshape(n * c, kh, kw, 1)
  return make_grid(per_channel, ncols=c if c > 1 else ncols)


def plot_filters(kernel: ArrayLike, path: str | os.PathLike, *, max_filters: int = 64,
                 max_channels: int = 16, ncols: int | None = None,
                 title: str | None = None) -> str:
  """Draws first-layer filters as an image grid and writes a PNG.

  Each filter is min-max normalised to ``[0, 1]`` on its own; ``C_in = 3``
  filters are shown in colour (the channels taken as RGB), others as one grey
  tile per input channel, a row per filter.

  Example::

    >>> import os, tempfile
    >>> import numpy as np
    >>> kernel = np.random.default_rng(0).normal(size=(3, 3, 1, 32))  # (kH, kW, C_in, C_out)
    >>> path = plot_filters(kernel, os.path.join(tempfile.mkdtemp(), 'filters_conv1.png'))
    >>> os.path.getsize(path) > 0
    True

  Args:
    kernel: ``(kH, kW, C_in, C_out)`` (HWIO).
    path: the PNG to write (its directory is created).
    max_filters: draw at most this many filters (the first ones).
    max_channels: at most this many input channels per filter (grey tiles).
    ncols: tiles per row for RGB or single-channel filters.
    title: figure title; default names the shape.

  Returns:
    The path written.
  """
  kernel = _check_kernel(kernel)
  grid = filter_grid(kernel, max_filters=max_filters, max_channels=max_channels, ncols=ncols)
  shown = min(kernel.shape[-1], max_filters)
  title = title or f"{shown} filters of {kernel.shape} (HWIO), min-max per filter"
  return save_image(grid, path, title=title, scale=2.0)


def plot_filter_kernels(kernel: ArrayLike, index: int, path: str | os.PathLike, *,
                        ncols: int | None = None, title: str | None = None) -> str:
  """Draws all ``C_in`` kernels of filter ``index`` of a (deeper) layer as grey tiles; writes a PNG.

  The ``C_in`` kernels are normalised together (min-max over the whole
  filter), so their relative strengths stay visible.

  Args:
    kernel: ``(kH, kW, C_in, C_out)`` (HWIO).
    index: the filter, ``0 <= index < C_out``.
    path: the PNG to write.
    ncols: tiles per row (default ``ceil(sqrt(C_in))``).
    title: figure title.

  Returns:
    The path written.
  """
  kernel = _check_kernel(kernel)
  c_out = kernel.shape[-1]
  if not isinstance(index, (int, np.integer)) or not -c_out <= index < c_out:
    raise ValueError(f"index must be an int in [0, {c_out}) for a kernel of shape "
                     f"{kernel.shape} (C_out={c_out}), got {index!r}")
  tiles = np.moveaxis(minmax(kernel[..., index]), -1, 0)[..., None]  # (C_in, kH, kW, 1)
  title = title or f"the {kernel.shape[2]} kernels of filter {int(index)} of {kernel.shape}"
  return save_image(make_grid(tiles, ncols=ncols), path, title=title, scale=2.0)


# Hand-crafted filters.

def hand_crafted_filters() -> dict[str, np.ndarray]:
  """Four classic hand-crafted 3x3 kernels, ``(kH, kW)`` float32.

  * ``gaussian_blur``: ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16`` (weights sum to 1).
  * ``sobel_x``: ``[[1, 0, -1], [2, 0, -2], [1, 0, -1]]``, responds to a
    brightness change along x (vertical edges).
  * ``sobel_y``: ``[[1, 2, 1], [0, 0, 0], [-1, -2, -1]]``, responds to a
    change along y (horizontal edges).
  * ``cross``: ``[[-1, 1, -1], [1, 1, 1], [-1, 1, -1]]``: positive where the
    object (a plus sign) has pixels, negative on the background, so a cross
    of ones gives the largest response, 5.

  Applied as a cross-correlation (``cnnjax.ops.conv``, ``apply_filter``).
  """
  sobel_y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)
  return {
      "gaussian_blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16,
      "sobel_x": np.ascontiguousarray(sobel_y.T),
      "sobel_y": sobel_y,
      "cross": np.array([[-1, 1, -1], [1, 1, 1], [-1, 1, -1]], np.float32),
  }


def cross_image() -> np.ndarray:
  """A 5x5 test image for the ``cross`` kernel: a plus of ones centred at (3, 3), ``(5, 5)`` float32."""
  image = np.zeros((5, 5), np.float32)
  image[3, 2:5] = 1
  image[2:5, 3] = 1
  return image


def apply_filter(image: ArrayLike, kernel: ArrayLike, *, padding: Any = "VALID") -> np.ndarray:
  """Applies one 2-D kernel to a grey image with ``cnnjax.ops.conv`` (cross-correlation).

  Args:
    image: ``(H, W)`` grey, or ``(H, W, C)`` colour (averaged over channels
      first).
    kernel: ``(kH, kW)``.
    padding: any ``ops.conv`` padding; ``'VALID'`` gives
      ``(H - kH + 1, W - kW + 1)``, every position where the kernel fits.

  Returns:
    The response, ``(H', W')`` float32.
  """
  image = _as_numpy(image, "image").astype(np.float32)
  kernel = _as_numpy(kernel, "kernel").astype(np.float32)
  if image.ndim == 3:
    image = image.mean(axis=-1)
  if image.ndim != 2:
    raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
  if kernel.ndim != 2:
    raise ValueError(f"kernel must be a 2-D (kH, kW) array, got shape {kernel.shape}")
  out = ops.conv(jnp.asarray(image)[None, :, :, None], jnp.asarray(kernel)[:, :, None, None],
                 padding=padding)
  return np.asarray(out[0, :, :, 0])


def sample_image(name: str = "china.jpg") -> np.ndarray:
  """A real photograph shipped with scikit-learn (no download): ``(H, W, 3)`` float32 in ``[0, 255]``.

  Args:
    name: ``'china.jpg'`` (427x640) or ``'flower.jpg'``.
  """
  from sklearn.datasets import load_sample_image  # noqa: PLC0415
  return np.asarray(load_sample_image(name), np.float32)


def plot_hand_crafted(image: ArrayLike, path: str | os.PathLike,
                      filters: Mapping[str, ArrayLike] | None = None) -> str:
  """Draws a grey image and its responses to the hand-crafted filters side by side; writes a PNG.

  Each panel is min-max normalised for display (the blur keeps the range of
  the image; edge responses are signed).

  Args:
    image: ``(H, W)`` or ``(H, W, C)``.
    path: the PNG to write.
    filters: name -> ``(kH, kW)`` kernel; default ``hand_crafted_filters()``.

  Returns:
    The path written.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
  from matplotlib.figure import Figure  # noqa: PLC0415

  filters = hand_crafted_filters() if filters is None else dict(filters)
  grey = _as_numpy(image, "image").astype(np.float32)
  grey = grey.mean(axis=-1) if grey.ndim == 3 else grey
  panels = [("original (grey)", grey)] + [
      (name, apply_filter(grey, kernel)) for name, kernel in filters.items()]
  fig = Figure(figsize=(3.2 * len(panels), 3.0))
  FigureCanvasAgg(fig)
  for i, (name, panel) in enumerate(panels):
    ax = fig.add_subplot(1, len(panels), i + 1)
    ax.imshow(minmax(panel), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"{name} {panel.shape}", fontsize=9)
    if panel.size <= 64:  # Small enough that the printed values stay legible.
      for (r, c), value in np.ndenumerate(panel):
        ax.text(c, r, f"{value:g}", ha="center", va="center", fontsize=8, color="tab:red")
    ax.set_axis_off()
  fig.tight_layout()
  path = os.fspath(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  return path
