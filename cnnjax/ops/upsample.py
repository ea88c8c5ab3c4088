"""Polyphase up-sampling: the inverse placement of adaptive polyphase sampling.

``polyphase_downsample`` (APS) keeps, per example, one of the ``prod(s)``
polyphase components of a map: the samples at ``phase + s * k``. A decoder
that puts its map back at positions ``0 + s * k`` (a plain zero-insertion or
transposed convolution) ignores that choice, and a shift of the input by one
pixel moves the reconstruction by a pixel on the wrong grid. APS unpooling
(Chaman & Dokmanić 2021, "Truly shift-equivariant convolutional neural
networks with adaptive polyphase upsampling") places the map at the phase the
encoder kept: for a circular shift ``t`` of the encoder's input, the kept
phase becomes ``(phase + t) mod s`` and the kept map rolls by
``(phase + t) div s``, so the placed map rolls by exactly ``t``.

* ``polyphase_upsample(x, index, stride)``: zeros everywhere except the
  component ``index`` (the inverse of ``polyphase_components`` for one
  component).
* ``interpolate_on_grid(z, stride, method, circular)``: fills the zeros
  (nearest neighbour: each sample repeated over the ``s`` cells that follow
  it; linear: triangle weights ``1 - |j| / s``) by a sum of shifts, which
  commute with circular shifts, so exact equivariance is kept.

Channels last, ``(N, H, W, C)`` (two spatial axes).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

METHODS = ("zeros", "nearest", "linear")


def _stride2(stride: int | Sequence[int]) -> tuple[int, int]:
  s = (stride, stride) if isinstance(stride, int) else tuple(int(v) for v in stride)
  if len(s) != 2 or min(s) < 1:
    raise ValueError(f"stride must be a positive int or a pair of them, got {stride!r}")
  return s  # type: ignore[return-value]


def polyphase_upsample(x: Array, index: Array | None, stride: int | Sequence[int] = 2) -> Array:
  """Places ``x`` on the polyphase grid ``index`` of a map ``stride`` times larger, zeros elsewhere.

  ``y[:, a + s0 * i, b + s1 * j] = x[:, i, j]`` with ``(a, b) =
  np.unravel_index(index, stride)`` per example (the numbering of
  ``polyphase_components``), so ``polyphase_downsample(y, stride,
  index=index)`` returns ``x``.

  Args:
    x: ``(N, h, w, C)``.
    index: ``(N,)`` int component per example (from ``polyphase_downsample``),
      or None for component 0 (a plain zero-insertion, as a transposed
      convolution's).
    stride: an int or a pair.

  Returns:
    ``(N, h * s0, w * s1, C)`` in ``x``'s dtype.
  """
  s0, s1 = _stride2(stride)
  if not hasattr(x, "ndim") or x.ndim != 4:
    raise ValueError(
        f"polyphase_upsample expects (N, h, w, C), channels last, got shape "
        f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
  n, h, w, c = x.shape
  if index is None:
    index = jnp.zeros((n,), jnp.int32)
  index = jnp.asarray(index)
  if index.shape != (n,) or not jnp.issubdtype(index.dtype, jnp.integer):
    raise ValueError(
        f"index must be an int array of shape (N,) = ({n},), one component per example, "
        f"got {index.dtype} {tuple(index.shape)}")
  onehot = jax.nn.one_hot(index, s0 * s1, dtype=x.dtype)  # (N, s0 * s1)
  parts = onehot[:, :, None, None, None] * x[:, None]  # (N, s0 * s1, h, w, C)
  parts = parts.reshape(n, s0, s1, h, w, c).transpose(0, 3, 1, 4, 2, 5)
  return parts.reshape(n, h * s0, w * s1, c)


def _shift(z: Array, offsets: tuple[int, int], circular: bool) -> Array:
  """``z`` moved by ``offsets`` on axes 1 and 2: rolled, or with zeros coming in."""
  if circular:
    return jnp.roll(z, offsets, axis=(1, 2))
  out = z
  for axis, t in zip((1, 2), offsets):
    if t == 0:
      continue
    n = out.shape[axis]
    pad = [(0, 0)] * out.ndim
    pad[axis] = (t, 0) if t > 0 else (0, -t)
    start = 0 if t > 0 else -t
    out = jax.lax.slice_in_dim(jnp.pad(out, pad), start, start + n, axis=axis)
  return out


def interpolate_on_grid(z: Array, stride: int | Sequence[int] = 2, method: str = "linear",
                        circular: bool = True) -> Array:
  """Fills a zero-inserted map ``z`` (from ``polyphase_upsample``) between its samples.

  Works on any phase: the filter is applied to the whole map, and only the
  samples are non-zero.

  Args:
    z: ``(N, H, W, C)``, non-zero only on one polyphase grid per example.
    stride: the grid's spacing, an int or a pair.
    method: ``'zeros'`` (unchanged), ``'nearest'`` (each sample fills the
      ``s0 x s1`` cells from it towards higher indices) or ``'linear'``
      (bilinear between neighbouring samples).
    circular: shifts wrap around (for circular networks; exactly
      shift-equivariant), or bring in zeros at the border.

  Returns:
    ``(N, H, W, C)``.
  """
  if method not in METHODS:
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")
  s0, s1 = _stride2(stride)
  if method == "zeros":
    return z
  if method == "nearest":
    offsets = list(itertools.product(range(s0), range(s1)))
    weights = [1.0] * len(offsets)
  else:
    offsets = list(itertools.product(range(-s0 + 1, s0), range(-s1 + 1, s1)))
    weights = [(1 - abs(a) / s0) * (1 - abs(b) / s1) for a, b in offsets]
  out = jnp.zeros_like(z)
  for (a, b), weight in zip(offsets, weights):
    out = out + jnp.asarray(weight, z.dtype) * _shift(z, (a, b), circular)
  return out
