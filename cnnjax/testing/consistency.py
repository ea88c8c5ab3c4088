"""Shift consistency of a classifier: how often two shifted copies get the same class.

Two protocols, named in the result because their numbers are not comparable:

* ``'circular'`` (Chaman & Dokmanić 2021, "Truly Shift-Invariant
  Convolutional Neural Networks"): each image is circularly shifted twice, by
  shifts drawn independently and uniformly from ``[-max_shift, max_shift]``
  on every spatial axis. A network with adaptive polyphase sampling and
  circular padding scores exactly 1.
* ``'crop'`` (Zhang 2019, "Making Convolutional Networks Shift-Invariant
  Again"): each image is zero-padded by ``max_shift`` on both sides of every
  spatial axis, and two crops of the original size are taken at offsets drawn
  independently and uniformly from ``{0, ..., 2 * max_shift}`` per axis
  (i.e. shifts in ``[-max_shift, max_shift]`` with zero fill). Zhang crops
  224 x 224 windows of a 256 x 256 ImageNet image at offsets in ``[0, 32)``,
  one offset pair per batch; our images are classified at their training
  size, so zero padding supplies the border and offsets are drawn per image.

In both, the two offsets may coincide (then the pair agrees trivially), as in
the papers' code.

Dense predictions (``apply_fn`` returning ``(N, *spatial, K)`` per-pixel
logits, e.g. a U-Net) are compared pixel by pixel: the value is the fraction
of pixels whose predicted class is the same in both copies, each prediction
map put back in the image's frame first. Circular: both maps are rolled back
by their shifts and every pixel is compared. Crop: a pixel of the original
image is compared when both crops contain it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

PROTOCOLS = ("circular", "crop")


@dataclasses.dataclass(frozen=True)
class ShiftConsistency:
  """The result of ``shift_consistency``.

  Attributes:
    value: fraction of (image, shift pair) comparisons whose predicted classes
      agree, in ``[0, 1]``; for dense predictions, of compared pixels.
    protocol: ``'circular'`` or ``'crop'``.
    max_shift: the largest shift per axis, in pixels.
    num_pairs: shift pairs drawn per image.
    num_images: images evaluated; ``value`` averages ``num_pairs * num_images``
      comparisons (of every compared pixel, for dense predictions).
    dense: whether ``apply_fn`` gave per-pixel predictions.
  """

  value: float
  protocol: str
  max_shift: int
  num_pairs: int
  num_images: int
  dense: bool = False


def _roll_one(image: jax.Array, shift: jax.Array) -> jax.Array:
  """``jnp.roll(image, shift)`` over the spatial axes of one ``(*spatial, C)`` image, traced shift."""
  for axis in range(image.ndim - 1):
    n = image.shape[axis]
    doubled = jnp.concatenate([image, image], axis=axis)
    start = jnp.mod(-shift[axis], n)
    image = lax.dynamic_slice_in_dim(doubled, start, n, axis=axis)
  return image


def _crop_one(image: jax.Array, offset: jax.Array, size: tuple[int, ...]) -> jax.Array:
  """The ``size`` window at ``offset`` of one padded ``(*spatial, C)`` image."""
  start = (*(offset[a] for a in range(len(size))), 0)
  return lax.dynamic_slice(image, start, (*size, image.shape[-1]))


def _shifted_pair(images: jax.Array, key: jax.Array, protocol: str, max_shift: int):
  """The two shifted copies of every image."""
  return _shifted_pair_and_draws(images, key, protocol, max_shift)[:2]


@partial(jax.jit, static_argnames=("protocol", "max_shift"))
def _shifted_pair_and_draws(images: jax.Array, key: jax.Array, protocol: str, max_shift: int):
  """The two copies and the two draws ``(N, rank)``: circular shifts, or crop offsets."""
  n, spatial = images.shape[0], images.shape[1:-1]
  k1, k2 = jax.random.split(key)
  if protocol == "circular":
    draw = lambda k: jax.random.randint(k, (n, len(spatial)), -max_shift, max_shift + 1)
    d1, d2 = draw(k1), draw(k2)
    return jax.vmap(_roll_one)(images, d1), jax.vmap(_roll_one)(images, d2), d1, d2
  pads = ((0, 0), *((max_shift, max_shift),) * len(spatial), (0, 0))
  padded = jnp.pad(images, pads)
  draw = lambda k: jax.random.randint(k, (n, len(spatial)), 0, 2 * max_shift + 1)
  crop = jax.vmap(partial(_crop_one, size=tuple(spatial)))
  d1, d2 = draw(k1), draw(k2)
  return crop(padded, d1), crop(padded, d2), d1, d2


def _predict(apply_fn: Callable, x: jax.Array, batch_size: int | None) -> np.ndarray:
  """Predicted classes: ``(N,)`` for a classifier, ``(N, *spatial)`` for per-pixel logits."""
  size = x.shape[0] if batch_size is None else batch_size
  labels = []
  for i in range(0, x.shape[0], size):
    chunk = x[i:i + size]
    logits = apply_fn(chunk)
    ok = hasattr(logits, "ndim") and logits.shape[:1] == chunk.shape[:1] and (
        logits.ndim == 2 or (logits.ndim == chunk.ndim and logits.shape[1:-1] == chunk.shape[1:-1]))
    if not ok:
      raise ValueError(
          f"apply_fn must map images (N, *spatial, C) to logits (N, num_classes) or per-pixel "
          f"logits (N, *spatial, num_classes), got {getattr(logits, 'shape', type(logits).__name__)} "
          f"for an input of shape {tuple(chunk.shape)}")
    labels.append(np.asarray(jnp.argmax(logits, axis=-1)))
  return np.concatenate(labels)


def _dense_agreement(p1: np.ndarray, p2: np.ndarray, d1: np.ndarray, d2: np.ndarray,
                     protocol: str, max_shift: int) -> tuple[int, int]:
  """(agreeing, compared) pixels of two prediction maps ``(N, *spatial)`` in the image's frame."""
  agree = compared = 0
  axes = tuple(range(p1.ndim - 1))
  for a, b, s1, s2 in zip(p1, p2, d1, d2):
    if protocol == "circular":
      # Undo each roll: pixel q of the image is at q + shift in its copy.
      a = np.roll(a, tuple(-int(v) for v in s1), axis=axes)
      b = np.roll(b, tuple(-int(v) for v in s2), axis=axes)
      agree += int(np.sum(a == b))
      compared += a.size
      continue
    # Crop at offset o of the padded image: output pixel i is image pixel i + o - max_shift.
    index_a, index_b = [], []
    for axis, n in enumerate(a.shape):
      lo = max(0, int(s1[axis]) - max_shift, int(s2[axis]) - max_shift)
      hi = min(n, n + int(s1[axis]) - max_shift, n + int(s2[axis]) - max_shift)
      if hi <= lo:
        break
      index_a.append(slice(lo - int(s1[axis]) + max_shift, hi - int(s1[axis]) + max_shift))
      index_b.append(slice(lo - int(s2[axis]) + max_shift, hi - int(s2[axis]) + max_shift))
    else:
      a, b = a[tuple(index_a)], b[tuple(index_b)]
      agree += int(np.sum(a == b))
      compared += a.size
  return agree, compared


def shift_consistency(
    apply_fn: Callable[[jax.Array], jax.Array],
    images: Any,
    *,
    max_shift: int,
    protocol: str = "circular",
    num_pairs: int = 5,
    key: Any = 0,
    batch_size: int | None = None,
) -> ShiftConsistency:
  """Fraction of random shift pairs on which a classifier predicts the same class.

  For each of ``num_pairs`` rounds, every image gets two random shifts under
  ``protocol`` (see the module docstring), both copies are classified by
  ``argmax(apply_fn(x), axis=-1)``, and the agreements are counted. For
  per-pixel logits the agreeing pixels are counted, in the image's frame (see
  the module docstring).

  Args:
    apply_fn: maps images ``(B, *spatial, C)`` to logits ``(B, num_classes)``
      or per-pixel logits ``(B, *spatial, num_classes)``, e.g.
      ``lambda x: model.apply(variables, x, train=False)``.
    images: ``(N, *spatial, C)`` test images, floating.
    max_shift: the largest shift per axis, in pixels (>= 0; for
      ``'circular'`` at most ``n - 1``).
    protocol: ``'circular'`` (Chaman & Dokmanić 2021) or ``'crop'`` (Zhang 2019).
    num_pairs: shift pairs drawn per image.
    key: a ``jax.random`` key or an int seed.
    batch_size: images per ``apply_fn`` call; default all at once.

  Returns:
    A ``ShiftConsistency`` recording the value and the protocol.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
  if not hasattr(images, "ndim") or images.ndim < 3:
    raise ValueError(
        f"images must be (N, *spatial, C), channels last, got shape "
        f"{getattr(images, 'shape', type(images).__name__)}")
  images = jnp.asarray(images)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise TypeError(f"images must be floating (e.g. float32 in [0, 1]), got {images.dtype}")
  if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
    raise ValueError(f"max_shift must be a non-negative int (pixels), got {max_shift!r}")
  if protocol == "circular" and max_shift >= min(images.shape[1:-1]):
    raise ValueError(
        f"max_shift={max_shift} must be smaller than every spatial size "
        f"{tuple(images.shape[1:-1])} for circular shifts")
  if not isinstance(num_pairs, (int, np.integer)) or num_pairs < 1:
    raise ValueError(f"num_pairs must be a positive int, got {num_pairs!r}")
  if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
    raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
  if isinstance(key, (int, np.integer)):
    key = jax.random.key(int(key))
  agree = total = 0
  dense = False
  for round_key in jax.random.split(key, num_pairs):
    first, second, d1, d2 = _shifted_pair_and_draws(images, round_key, protocol, int(max_shift))
    p1, p2 = _predict(apply_fn, first, batch_size), _predict(apply_fn, second, batch_size)
    dense = p1.ndim > 1
    if dense:
      a, c = _dense_agreement(p1, p2, np.asarray(d1), np.asarray(d2), protocol, int(max_shift))
      agree, total = agree + a, total + c
    else:
      agree += int(np.sum(p1 == p2))
      total += p1.shape[0]
  return ShiftConsistency(
      value=agree / max(total, 1), protocol=protocol, max_shift=int(max_shift),
      num_pairs=int(num_pairs), num_images=int(images.shape[0]), dense=dense)
