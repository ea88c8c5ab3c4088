"""Max and average pooling, channels last, with TensorFlow's ``'SAME'`` semantics.

Signatures follow ``flax.linen.max_pool``/``avg_pool`` (``strides`` defaults
to 1 per axis, as in Flax). Padding semantics follow TensorFlow's ``tf.nn.max_pool``/``avg_pool``
(and PyTorch's pooling defaults): max pooling pads with -inf, so padding never wins;
average pooling divides by the number of real (unpadded) elements under the
window by default, or by the whole window with ``count_include_pad=True``.
Note that ``flax.linen.avg_pool``'s default is the opposite
(``count_include_pad=True``).

Inputs are ``(N, *spatial, C)`` with 1, 2 or 3 spatial axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops import arithmetic
from cnnjax.ops.arithmetic import PaddingLike
from cnnjax.ops.conv import pad_spatial
from cnnjax.ops.validation import as_tuple, check_input

Array = jax.Array


def _pool_args(x, window_shape, strides, padding, name):
  if isinstance(window_shape, int) or not all(isinstance(k, int) and k > 0 for k in window_shape):
    raise ValueError(f"{name}: window_shape must be a tuple of positive ints, one per spatial axis, got {window_shape!r}")
  rank = len(window_shape)
  check_input(x, rank, "x")
  strides = as_tuple(strides, rank, "strides")
  spatial = tuple(x.shape[1:-1])
  mode, pads = arithmetic.resolve_padding(padding, spatial, window_shape, strides)
  out = tuple(arithmetic.conv_output_size(n, k, s, p) for n, k, s, p in zip(spatial, window_shape, strides, pads))
  if min(out) < 1:
    raise ValueError(
        f"{name}: window {tuple(window_shape)} larger than the padded input "
        f"(input {spatial}, padding {padding!r}, pads {pads})")
  return tuple(window_shape), strides, mode, pads


def _reshape_pool(x: Array, window: tuple[int, ...], reduce) -> Array | None:
  """Non-overlapping windows that tile the input exactly: a reshape and a reduction.

  Its gradient avoids select-and-scatter, which XLA:CPU runs slowly.
  """
  spatial = x.shape[1:-1]
  if any(n % k for n, k in zip(spatial, window)):
    return None
  shape = [x.shape[0]]
  for n, k in zip(spatial, window):
    shape += [n // k, k]
  shape.append(x.shape[-1])
  axes = tuple(2 + 2 * a for a in range(len(window)))
  return reduce(x.reshape(shape), axis=axes)


def max_pool(
    x: Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
) -> Array:
  """Max pooling.

  Args:
    x: ``(N, *spatial, C)``, floating.
    window_shape: window per spatial axis, e.g. ``(2, 2)``.
    strides: per spatial axis; default 1 (as ``flax.linen.max_pool``).
    padding: ``'VALID'``, ``'SAME'`` (pads with -inf), ``'CIRCULAR'``, or
      explicit ``((lo, hi), ...)`` (-inf).

  Returns:
    ``(N, *spatial_out, C)``.
  """
  window, strides, mode, pads = _pool_args(x, window_shape, strides, padding, "max_pool")
  no_pad = all(p == (0, 0) for p in pads)
  if no_pad and window == strides:
    fast = _reshape_pool(x, window, jnp.max)
    if fast is not None:
      return fast
  x = pad_spatial(x, pads, mode, value=-jnp.inf)
  dims = (1, *window, 1)
  return lax.reduce_window(x, -jnp.inf, lax.max, dims, (1, *strides, 1), "VALID")


def avg_pool(
    x: Array,
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: PaddingLike = "VALID",
    count_include_pad: bool = False,
) -> Array:
  """Average pooling.

  Args:
    x: ``(N, *spatial, C)``, floating.
    window_shape: window per spatial axis.
    strides: per spatial axis; default 1 (as Flax).
    padding: ``'VALID'``, ``'SAME'``, ``'CIRCULAR'``, ``'REFLECT'`` or explicit pairs.
    count_include_pad: divide by the whole window (zeros included) instead of
      the number of real elements. Only zero padding is affected: wrapped or
      reflected values are real and always counted.

  Returns:
    ``(N, *spatial_out, C)``.
  """
  window, strides, mode, pads = _pool_args(x, window_shape, strides, padding, "avg_pool")
  no_pad = all(p == (0, 0) for p in pads)
  if no_pad and window == strides:
    fast = _reshape_pool(x, window, jnp.mean)
    if fast is not None:
      return fast
  padded = pad_spatial(x, pads, mode)
  dims, step = (1, *window, 1), (1, *strides, 1)
  total = lax.reduce_window(padded, jnp.zeros((), x.dtype), lax.add, dims, step, "VALID")
  if count_include_pad or mode != "constant" or no_pad:
    return total / math.prod(window)
  ones = pad_spatial(jnp.ones((1, *x.shape[1:-1], 1), x.dtype), pads, mode)
  counts = lax.reduce_window(ones, jnp.zeros((), x.dtype), lax.add, dims, step, "VALID")
  return total / counts


def global_avg_pool(x: Array, keepdims: bool = False) -> Array:
  """Mean over all spatial axes: ``(N, *spatial, C) -> (N, C)`` (or ``(N, 1, ..., 1, C)``)."""
  if not hasattr(x, "ndim") or x.ndim < 3:
    raise ValueError(f"global_avg_pool expects (N, *spatial, C) with at least one spatial axis, got shape {getattr(x, 'shape', None)}")
  check_input(x, x.ndim - 2, "x")
  return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)


def global_max_pool(x: Array, keepdims: bool = False) -> Array:
  """Max over all spatial axes: ``(N, *spatial, C) -> (N, C)`` (or ``(N, 1, ..., 1, C)``)."""
  if not hasattr(x, "ndim") or x.ndim < 3:
    raise ValueError(f"global_max_pool expects (N, *spatial, C) with at least one spatial axis, got shape {getattr(x, 'shape', None)}")
  check_input(x, x.ndim - 2, "x")
  return jnp.max(x, axis=tuple(range(1, x.ndim - 1)), keepdims=keepdims)
