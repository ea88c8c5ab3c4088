"""Pooling layers over ``cnnjax.ops.pooling``: ``MaxPool``, ``AvgPool``, global pools.

Parameter-free modules, so that pooling can be passed to blocks and models as
a ready-made partial (``functools.partial(MaxPool, (3, 3), (2, 2), 'SAME')``)
like any other layer. Channels last, ``(N, *spatial, C)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax import ops
from cnnjax.layers._checks import check_layer_input
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


def _window(window_shape: Sequence[int], layer: str) -> tuple[int, ...]:
  if isinstance(window_shape, int) or not all(isinstance(k, int) and k > 0 for k in window_shape):
    raise ValueError(
        f"{layer}: window_shape must be a tuple of positive ints, one per spatial "
        f"axis (e.g. (2, 2) for NHWC), got {window_shape!r}")
  if not 1 <= len(window_shape) <= 3:
    raise ValueError(f"{layer}: window_shape must have 1, 2 or 3 entries, got {window_shape!r}")
  return tuple(window_shape)


class MaxPool(nn.Module):
  """Max pooling, as ``flax.linen.max_pool``.

  ``'SAME'`` pads with -inf, so a padded element never wins.

  Attributes:
    window_shape: window per spatial axis, e.g. ``(2, 2)``.
    strides: per spatial axis; ``None`` means 1 (as Flax, not the window).
    padding: ``'VALID'`` (default), ``'SAME'``, ``'CIRCULAR'`` or
      ``((lo, hi), ...)``.
  """

  window_shape: Sequence[int]
  strides: Sequence[int] | None = None
  padding: PaddingLike = "VALID"

  def __call__(self, x: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, C)``."""
    window = _window(self.window_shape, "MaxPool")
    check_layer_input("MaxPool", x, len(window), kernel_size=self.window_shape)
    return ops.max_pool(x, window, self.strides, self.padding)


class AvgPool(nn.Module):
  """Average pooling.

  By default (``count_include_pad=False``, TensorFlow's and Keras' rule) a
  window that overlaps zero padding is divided by the number of real elements
  under it. ``flax.linen.avg_pool`` defaults to ``count_include_pad=True``
  (divide by the whole window); set it to match Flax or PyTorch's default.

  Attributes:
    window_shape: window per spatial axis.
    strides: per spatial axis; ``None`` means 1 (as Flax).
    padding: ``'VALID'`` (default), ``'SAME'``, ``'CIRCULAR'``, ``'REFLECT'``
      or ``((lo, hi), ...)``.
    count_include_pad: divide by the whole window, zeros included.
  """

  window_shape: Sequence[int]
  strides: Sequence[int] | None = None
  padding: PaddingLike = "VALID"
  count_include_pad: bool = False

  def __call__(self, x: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, C)``."""
    window = _window(self.window_shape, "AvgPool")
    check_layer_input("AvgPool", x, len(window), kernel_size=self.window_shape)
    return ops.avg_pool(x, window, self.strides, self.padding, self.count_include_pad)


def _check_global(layer: str, x: Array) -> None:
  if not hasattr(x, "ndim"):
    raise TypeError(f"{layer}: input must be an array, got {type(x).__name__}")
  if x.ndim < 3:
    raise ValueError(
        f"{layer}: expected (N, *spatial, C) channels last with at least one "
        f"spatial axis (rank >= 3), got shape {tuple(x.shape)} (rank {x.ndim})")
  check_layer_input(layer, x, x.ndim - 2)


class GlobalAvgPool(nn.Module):
  """Mean over all spatial axes: ``(N, *spatial, C)`` to ``(N, C)``.

  Attributes:
    keepdims: keep the spatial axes as size 1, ``(N, 1, ..., 1, C)``.
  """

  keepdims: bool = False

  def __call__(self, x: Array) -> Array:
    _check_global("GlobalAvgPool", x)
    return ops.global_avg_pool(x, keepdims=self.keepdims)


class GlobalMaxPool(nn.Module):
  """Max over all spatial axes: ``(N, *spatial, C)`` to ``(N, C)``.

  Attributes:
    keepdims: keep the spatial axes as size 1, ``(N, 1, ..., 1, C)``.
  """

  keepdims: bool = False

  def __call__(self, x: Array) -> Array:
    _check_global("GlobalMaxPool", x)
    return ops.global_max_pool(x, keepdims=self.keepdims)
