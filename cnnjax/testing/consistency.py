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
      agree, in ``[0, 1]``.
    protocol: ``'circular'`` or ``'crop'``.
    max_shift: the largest shift per axis, in pixels.
    num_pairs: shift pairs drawn per image.
    num_images: images evaluated; ``value`` averages ``num_pairs * num_images``
      comparisons.
  """

  value: float
  protocol: str
  max_shift: int
  num_pairs: int
  num_images: int


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


@partial(jax.jit, static_argnames=("protocol", "max_shift"))
def _shifted_pair(images: jax.Array, key: jax.Array, protocol: str, max_shift: int):
  n, spatial = images.shape[0], images.shape[1:-1]
  k1, k2 = jax.random.split(key)
  if protocol == "circular":
    draw = lambda k: jax.random.randint(k, (n, len(spatial)), -max_shift, max_shift + 1)
    return jax.vmap(_roll_one)(images, draw(k1)), jax.vmap(_roll_one)(images, draw(k2))
  pads = ((0, 0), *((max_shift, max_shift),) * len(spatial), (0, 0))
  padded = jnp.pad(images, pads)
  draw = lambda k: jax.random.randint(k, (n, len(spatial)), 0, 2 * max_shift + 1)
  crop = jax.vmap(partial(_crop_one, size=tuple(spatial)))
  return crop(padded, draw(k1)), crop(padded, draw(k2))


def _predict(apply_fn: Callable, x: jax.Array, batch_size: int | None) -> np.ndarray:
  size = x.shape[0] if batch_size is None else batch_size
  labels = []
  for i in range(0, x.shape[0], size):
    logits = apply_fn(x[i:i + size])
    if not hasattr(logits, "ndim") or logits.ndim != 2 or logits.shape[0] != x[i:i + size].shape[0]:
      raise ValueError(
          f"apply_fn must map images (N, *spatial, C) to logits (N, num_classes), "
          f"got {getattr(logits, 'shape', type(logits).__name__)} for an input of shape "
          f"{tuple(x[i:i + size].shape)}")
    labels.append(np.asarray(jnp.argmax(logits, axis=-1)))
  return np.concatenate(labels)


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
  ``argmax(apply_fn(x), axis=-1)``, and the agreements are counted.

  Args:
    apply_fn: maps images ``(B, *spatial, C)`` to logits ``(B, num_classes)``,
      e.g. ``lambda x: model.apply(variables, x, train=False)``.
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
  agree = 0
  for round_key in jax.random.split(key, num_pairs):
    first, second = _shifted_pair(images, round_key, protocol, int(max_shift))
    agree += int(np.sum(_predict(apply_fn, first, batch_size) == _predict(apply_fn, second, batch_size)))
  total = num_pairs * images.shape[0]
  return ShiftConsistency(
      value=agree / total, protocol=protocol, max_shift=int(max_shift),
      num_pairs=int(num_pairs), num_images=int(images.shape[0]))
