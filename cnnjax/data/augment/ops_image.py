"""Per-example augmentations: ``f(key, image) -> image`` for ONE image ``(H, W, C)``, on device.

Every function takes a PRNG key and one image of a floating dtype, returns an
image of the same shape and dtype (except the crops, which return their
``size``), and jits and vmaps. Parameter ranges follow torchvision
(``degrees=(lo, hi)``, ``scale=(0.08, 1.0)``...). Nothing assumes a value
range: the loaders hand out normalised images, so nothing is clipped to
``[0, 1]`` (hue is rotated in YIQ space, a linear map, and salt-and-pepper uses
the image's own min and max).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Augmentation = Callable[[Array, Array], Array]
SizeLike = int | Sequence[int] | None
RangeLike = float | Sequence[float]


# --- checks -------------------------------------------------------------------------

def _check_image(image: Any, what: str = "image") -> None:
  if not hasattr(image, "shape") or image.ndim != 3:
    raise ValueError(
        f"{what} must be one (H, W, C) image, channels last; got shape "
        f"{tuple(getattr(image, 'shape', ()))}. Use batch_augment(fn) for an (N, H, W, C) batch")
  if not jnp.issubdtype(image.dtype, jnp.floating):
    raise TypeError(
        f"{what} must have a floating dtype, got {image.dtype}; cast it first, e.g. "
        f"image.astype(jnp.float32)")


def _check_batch(images: Any) -> None:
  if not hasattr(images, "shape") or images.ndim != 4:
    raise ValueError(
        f"images must be a batch (N, H, W, C), channels last; got shape "
        f"{tuple(getattr(images, 'shape', ()))}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"images must have a floating dtype, got {images.dtype}")


def _pair(value: SizeLike, default: tuple[int, int], what: str) -> tuple[int, int]:
  if value is None:
    return default
  if isinstance(value, int):
    return value, value
  value = tuple(int(v) for v in value)
  if len(value) != 2:
    raise ValueError(f"{what} must be an int or (height, width), got {value}")
  return value  # type: ignore[return-value]


def _range(value: RangeLike, what: str, symmetric_about: float = 0.0) -> tuple[float, float]:
  """``x`` -> ``(c - x, c + x)``; ``(lo, hi)`` checked."""
  if isinstance(value, (int, float)):
    if value < 0:
      raise ValueError(f"{what} must be non-negative when a single number, got {value}")
    return symmetric_about - float(value), symmetric_about + float(value)
  lo, hi = (float(v) for v in value)
  if lo > hi:
    raise ValueError(f"{what} must be (lo, hi) with lo <= hi, got {(lo, hi)}")
  return lo, hi


def _bernoulli(key: Array, p: float) -> Array:
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"probability p must be in [0, 1], got {p}")
  return jax.random.uniform(key) < p


# --- geometry -----------------------------------------------------------------------

def horizontal_flip(key: Array, image: Array, p: float = 0.5) -> Array:
  """Mirrors ``(H, W, C)`` left-right with probability ``p``."""
  _check_image(image)
  return jnp.where(_bernoulli(key, p), image[:, ::-1, :], image)


def vertical_flip(key: Array, image: Array, p: float = 0.5) -> Array:
  """Mirrors ``(H, W, C)`` top-bottom with probability ``p``."""
  _check_image(image)
  return jnp.where(_bernoulli(key, p), image[::-1, :, :], image)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge",
              "symmetric": "symmetric", "wrap": "wrap", "circular": "wrap"}


def random_crop(
    key: Array,
    image: Array,
    size: SizeLike = None,
    padding: int | Sequence[int] = 0,
    pad_mode: str = "constant",
    fill: float = 0.0,
) -> Array:
  """Pads, then crops a ``size`` window at a uniformly random position.

  Args:
    key: PRNG key.
    image: ``(H, W, C)``.
    size: output ``(h, w)`` or an int; default ``(H, W)``.
    padding: pixels added on every side (int) or ``(pad_h, pad_w)``.
    pad_mode: ``'constant'`` (with ``fill``), ``'reflect'``, ``'edge'``,
      ``'symmetric'`` or ``'wrap'``.
    fill: the constant of ``pad_mode='constant'``.

  Returns:
    ``(h, w, C)``.
  """
  _check_image(image)
  height, width, _ = image.shape
  pad_h, pad_w = _pair(padding, (0, 0), "padding")
  if pad_mode not in _PAD_MODES:
    raise ValueError(f"pad_mode must be one of {sorted(_PAD_MODES)}, got {pad_mode!r}")
  out_h, out_w = _pair(size, (height, width), "size")
  if out_h > height + 2 * pad_h or out_w > width + 2 * pad_w:
    raise ValueError(
        f"crop size {(out_h, out_w)} is larger than the padded image "
        f"{(height + 2 * pad_h, width + 2 * pad_w)} (image {(height, width)}, padding {(pad_h, pad_w)})")
  widths = ((pad_h, pad_h), (pad_w, pad_w), (0, 0))
  if _PAD_MODES[pad_mode] == "constant":
    padded = jnp.pad(image, widths, constant_values=jnp.asarray(fill, image.dtype))
  else:
    padded = jnp.pad(image, widths, mode=_PAD_MODES[pad_mode])
  key_y, key_x = jax.random.split(key)
  top = jax.random.randint(key_y, (), 0, padded.shape[0] - out_h + 1)
  left = jax.random.randint(key_x, (), 0, padded.shape[1] - out_w + 1)
  return lax.dynamic_slice(padded, (top, left, 0), (out_h, out_w, image.shape[2]))


def rotate(
    key: Array, image: Array, degrees: RangeLike = (-10.0, 10.0), fill: float = 0.0,
    order: int = 1,
) -> Array:
  """Rotates about the centre by an angle uniform in ``degrees``, bilinearly.

  Args:
    key: PRNG key.
    image: ``(H, W, C)``.
    degrees: ``(lo, hi)`` in degrees, counter-clockwise; a number ``d`` means
      ``(-d, d)``.
    fill: value outside the rotated image.
    order: 1 bilinear, 0 nearest neighbour (for class maps).

  Returns:
    ``(H, W, C)``; an angle of 0 returns the image exactly.
  """
  _check_image(image)
  lo, hi = _range(degrees, "degrees")
  angle = jnp.deg2rad(jax.random.uniform(key, (), minval=lo, maxval=hi))
  height, width, channels = image.shape
  cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
  y, x = jnp.meshgrid(jnp.arange(height, dtype=jnp.float32) - cy,
                      jnp.arange(width, dtype=jnp.float32) - cx, indexing="ij")
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  # Inverse map: the output pixel (y, x) samples the input at R(-angle) (y, x);
  # image rows grow downwards, hence the signs.
  src_y = cos * y + sin * x + cy
  src_x = -sin * y + cos * x + cx
  coords = [src_y, src_x]

  def one_channel(channel):
    return jax.scipy.ndimage.map_coordinates(channel, coords, order=order, mode="constant", cval=fill)

  out = jax.vmap(one_channel, in_axes=2, out_axes=2)(image.astype(jnp.float32))
  return out.astype(image.dtype).reshape(height, width, channels)


def _sample_box(
    key: Array, height: int, width: int, scale: tuple[float, float],
    ratio: tuple[float, float], attempts: int = 10
) -> tuple[Array, Array, Array]:
  """torchvision's box sampling: ``attempts`` tries of (area, log-ratio); first that fits.

  Returns:
    ``(h, w, found)``: box size as int32 scalars and whether any try fitted.
  """
  key_area, key_ratio = jax.random.split(key)
  area = height * width * jax.random.uniform(key_area, (attempts,), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(
      key_ratio, (attempts,), minval=math.log(ratio[0]), maxval=math.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  w = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
  first = jnp.argmax(fits)
  return h[first], w[first], fits.any()


def random_resized_crop(
    key: Array,
    image: Array,
    size: SizeLike = None,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    method: str = "linear",
) -> Array:
  """Crops a random box (area fraction in ``scale``, aspect in ``ratio``) and resizes it.

  As torchvision's ``RandomResizedCrop``: ten tries, then the centre crop
  clamped to ``ratio``. The resize is ``jax.image.scale_and_translate`` (with
  antialiasing).

  Args:
    key: PRNG key.
    image: ``(H, W, C)``.
    size: output ``(h, w)`` or int; default ``(H, W)``.
    scale: range of the box area as a fraction of the image area.
    ratio: range of the box aspect ratio width / height.
    method: ``jax.image`` interpolation, e.g. ``'linear'``, ``'cubic'``, or
      ``'nearest'`` (the same box, each output pixel the input pixel under
      its centre, for class maps).

  Returns:
    ``(h, w, C)``.
  """
  _check_image(image)
  height, width, channels = image.shape
  out_h, out_w = _pair(size, (height, width), "size")
  scale, ratio = _range(scale, "scale"), _range(ratio, "ratio")
  if ratio[0] <= 0:
    raise ValueError(f"ratio must be positive, got {ratio}")
  if method == "nearest":
    return _random_resized_crop_nearest(key, image, (out_h, out_w), scale, ratio)
  top, left, h, w = _crop_box(key, height, width, scale, ratio)
  scale_yx = jnp.stack([out_h / h, out_w / w]).astype(jnp.float32)
  translation = -jnp.stack([top, left]).astype(jnp.float32) * scale_yx
  out = jax.image.scale_and_translate(
      image.astype(jnp.float32), (out_h, out_w, channels), (0, 1), scale_yx, translation,
      method=method, antialias=True)
  return out.astype(image.dtype)


def _crop_box(key: Array, height: int, width: int, scale, ratio):
  """``random_resized_crop``'s box ``(top, left, h, w)``: same key, same box."""
  key_box, key_y, key_x = jax.random.split(key, 3)
  h, w, found = _sample_box(key_box, height, width, scale, ratio)
  # Fallback: the whole image cut to the nearest allowed aspect ratio.
  in_ratio = width / height
  if in_ratio < ratio[0]:
    fw, fh = width, int(round(width / ratio[0]))
  elif in_ratio > ratio[1]:
    fh, fw = height, int(round(height * ratio[1]))
  else:
    fh, fw = height, width
  h = jnp.where(found, h, fh)
  w = jnp.where(found, w, fw)
  top = jnp.where(found, jax.random.randint(key_y, (), 0, height - h + 1), (height - h) // 2)
  left = jnp.where(found, jax.random.randint(key_x, (), 0, width - w + 1), (width - w) // 2)
  return top, left, h, w


def _random_resized_crop_nearest(key, image, size, scale, ratio):
  height, width, _ = image.shape
  top, left, h, w = _crop_box(key, height, width, scale, ratio)
  # Output pixel i covers [i, i + 1) * h / out_h of the box; take the pixel under its centre.
  rows = top + jnp.clip(jnp.floor((jnp.arange(size[0]) + 0.5) * h / size[0]).astype(jnp.int32), 0, h - 1)
  cols = left + jnp.clip(jnp.floor((jnp.arange(size[1]) + 0.5) * w / size[1]).astype(jnp.int32), 0, w - 1)
  return image[rows][:, cols]


# --- filters and noise --------------------------------------------------------------

def gaussian_kernel1d(sigma: Array, kernel_size: int) -> Array:
  """Normalised Gaussian taps ``(kernel_size,)``; ``sigma <= 0`` gives the identity (a delta)."""
  half = (kernel_size - 1) / 2.0
  x = jnp.arange(kernel_size, dtype=jnp.float32) - half
  safe = jnp.where(sigma > 0, sigma, 1.0)
  taps = jnp.exp(-0.5 * (x / safe) ** 2)
  taps = taps / taps.sum()
  delta = (jnp.abs(x) < 0.5).astype(jnp.float32)
  return jnp.where(sigma > 0, taps, delta)


def _filter_axis(image: Array, taps: Array, axis: int) -> Array:
  k = taps.shape[0]
  pad = [(0, 0)] * image.ndim
  pad[axis] = ((k - 1) // 2, k // 2)
  padded = jnp.pad(image, pad, mode="reflect" if image.shape[axis] > 1 else "edge")
  n = image.shape[axis]
  return sum(taps[i] * lax.slice_in_dim(padded, i, i + n, axis=axis) for i in range(k))


def gaussian_blur(
    key: Array, image: Array, kernel_size: int = 3, sigma: RangeLike = (0.1, 2.0)
) -> Array:
  """Blurs with a separable Gaussian of ``sigma`` uniform in ``sigma``, reflect padding.

  Args:
    key: PRNG key.
    image: ``(H, W, C)``.
    kernel_size: odd number of taps per axis.
    sigma: ``(lo, hi)`` or a fixed number; ``0`` is the identity.

  Returns:
    ``(H, W, C)``.
  """
  _check_image(image)
  if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
  lo, hi = (float(sigma), float(sigma)) if isinstance(sigma, (int, float)) else _range(sigma, "sigma")
  if lo < 0:
    raise ValueError(f"sigma must be non-negative, got {sigma}")
  s = jax.random.uniform(key, (), minval=lo, maxval=hi)
  taps = gaussian_kernel1d(s, kernel_size)
  out = _filter_axis(_filter_axis(image.astype(jnp.float32), taps, 0), taps, 1)
  return out.astype(image.dtype)


def random_erasing(
    key: Array,
    image: Array,
    p: float = 0.5,
    scale: Sequence[float] = (0.02, 0.33),
    ratio: Sequence[float] = (0.3, 3.3),
    value: float = 0.0,
) -> Array:
  """With probability ``p``, sets a random box to ``value`` (Zhong et al., 2020; torchvision).

  The box's area fraction is uniform in ``scale`` and its aspect ratio
  log-uniform in ``ratio``, ten tries; if none fits, nothing is erased.

  Returns:
    ``(H, W, C)``.
  """
  _check_image(image)
  height, width, _ = image.shape
  scale, ratio = _range(scale, "scale"), _range(ratio, "ratio")
  key_apply, key_box, key_y, key_x = jax.random.split(key, 4)
  h, w, found = _sample_box(key_box, height, width, scale, ratio)
  top = jax.random.randint(key_y, (), 0, height - h + 1)
  left = jax.random.randint(key_x, (), 0, width - w + 1)
  rows = jnp.arange(height)[:, None, None]
  cols = jnp.arange(width)[None, :, None]
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
  erase = inside & found & _bernoulli(key_apply, p)
  return jnp.where(erase, jnp.asarray(value, image.dtype), image)


def salt_and_pepper(
    key: Array, image: Array, p: float = 0.05, low: float | None = None, high: float | None = None
) -> Array:
  """Sets each pixel (all channels) to ``low`` or ``high`` with probability ``p / 2`` each.

  ``low``/``high`` default to the image's min and max.
  """
  _check_image(image)
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"p must be in [0, 1], got {p}")
  u = jax.random.uniform(key, image.shape[:2] + (1,))
  low = image.min() if low is None else jnp.asarray(low, image.dtype)
  high = image.max() if high is None else jnp.asarray(high, image.dtype)
  out = jnp.where(u < p / 2, low, image)
  return jnp.where((u >= p / 2) & (u < p), high, out).astype(image.dtype)


# --- colour -------------------------------------------------------------------------

# NumPy constants: a jnp array here would start the XLA backend at import,
# before jax.distributed.initialize can run in a multi-process job.
_GREY = np.array([0.299, 0.587, 0.114], np.float32)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def _grey(image: Array) -> Array:
  if image.shape[-1] == 3:
    return (image @ _GREY)[..., None]
  return image.mean(axis=-1, keepdims=True)


def color_jitter(
    key: Array,
    image: Array,
    brightness: RangeLike = 0.0,
    contrast: RangeLike = 0.0,
    saturation: RangeLike = 0.0,
    hue: RangeLike = 0.0,
) -> Array:
  """Random brightness, contrast, saturation and hue, in that order (torchvision ranges).

  A number ``b`` for brightness/contrast/saturation means a factor uniform in
  ``[max(0, 1 - b), 1 + b]``, a pair is the factor range; a number ``h`` for
  hue means a shift uniform in ``[-h, h]`` turns (``|h| <= 0.5``).

  * brightness scales the image by the factor;
  * contrast blends with the image's mean grey level;
  * saturation blends with the per-pixel grey image (``C == 3`` only);
  * hue rotates the chroma plane of YIQ (``C == 3`` only; linear, so it works
    on normalised images too).

  Returns:
    ``(H, W, C)``, not clipped.
  """
  _check_image(image)
  dtype = image.dtype
  x = image.astype(jnp.float32)
  k_b, k_c, k_s, k_h = jax.random.split(key, 4)

  def factor(k, value, what):
    lo, hi = _range(value, what, symmetric_about=1.0)
    lo = max(lo, 0.0)
    return jax.random.uniform(k, (), minval=lo, maxval=hi)

  if brightness != 0.0:
    x = x * factor(k_b, brightness, "brightness")
  if contrast != 0.0:
    f = factor(k_c, contrast, "contrast")
    x = f * x + (1 - f) * _grey(x).mean()
  if x.shape[-1] == 3 and saturation != 0.0:
    f = factor(k_s, saturation, "saturation")
    x = f * x + (1 - f) * _grey(x)
  if x.shape[-1] == 3 and hue != 0.0:
    lo, hi = _range(hue, "hue")
    if lo < -0.5 or hi > 0.5:
      raise ValueError(f"hue must lie in [-0.5, 0.5], got {(lo, hi)}")
    theta = 2 * jnp.pi * jax.random.uniform(k_h, (), minval=lo, maxval=hi)
    c, s = jnp.cos(theta), jnp.sin(theta)
    rotation = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]).at[1:, 1:].set(
        jnp.array([[c, -s], [s, c]]))
    x = x @ (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).T
  return x.astype(dtype)


# --- identity ---------------------------------------------------------------------

def identity(key: Array, image: Array) -> Array:
  """Returns ``image`` unchanged."""
  del key
  return image
