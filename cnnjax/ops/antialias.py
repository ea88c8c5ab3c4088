"""Anti-aliased and polyphase downsampling: blur pooling and adaptive polyphase sampling.

A strided convolution or pooling keeps one sample in ``s`` per axis, so a
shift of the input by one pixel can change its output by more than a shift:
the operation is equivariant only to shifts that are multiples of the stride.
Two remedies, both channels last ``(N, *spatial, C)`` with 1, 2 or 3 spatial
axes:

* ``blur_pool`` (Zhang 2019, "Making Convolutional Networks Shift-Invariant
  Again"): low-pass filter every channel with a normalised binomial kernel
  before subsampling. Aliasing is reduced, not removed.
* ``polyphase_downsample`` (adaptive polyphase sampling, APS; Chaman &
  Dokmanić 2021, "Truly Shift-Invariant Convolutional Neural Networks"): of
  the ``prod(stride)`` polyphase components, keep the one with the largest
  ``l_p`` norm, chosen per example. A circular shift of the input permutes the
  components and shifts each of them circularly, so the chosen output is a
  circular shift of the unshifted one: a circular network that ends in a
  global pool is exactly invariant to circular shifts of any size.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.ops import arithmetic
from cnnjax.ops.arithmetic import PaddingLike
from cnnjax.ops.conv import conv, pad_spatial
from cnnjax.ops.validation import as_tuple, check_input

Array = jax.Array

#: Filter sizes of ``binomial_filter`` (Zhang 2019 uses 1 to 7; 3 and 5 are common).
FILTER_SIZES = tuple(range(1, 8))


def binomial_filter(size: int, rank: int = 2) -> np.ndarray:
  """Normalised binomial low-pass filter, the blur of Zhang 2019.

  The 1-D taps are the binomial coefficients ``C(size - 1, k)`` divided by
  their sum ``2 ** (size - 1)``: size 3 gives ``[1, 2, 1] / 4``, size 5
  ``[1, 4, 6, 4, 1] / 16``. Higher ranks take the outer product of the 1-D
  taps, so the filter is separable and sums to one.

  Args:
    size: taps per axis, 1 to 7 (size 1 is the identity: no blur).
    rank: number of spatial axes, 1, 2 or 3.

  Returns:
    A float64 array of shape ``(size,) * rank`` summing to 1.
  """
  if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size not in FILTER_SIZES:
    raise ValueError(f"filter_size must be an int in {FILTER_SIZES[0]}..{FILTER_SIZES[-1]}, got {size!r}")
  if rank not in (1, 2, 3):
    raise ValueError(f"rank must be 1, 2 or 3 spatial axes, got {rank!r}")
  taps = np.array([math.comb(size - 1, k) for k in range(size)], dtype=np.float64)
  taps /= taps.sum()
  out = taps
  for _ in range(rank - 1):
    out = np.multiply.outer(out, taps)
  return out


def _blur_pads(x: Array, filter_size: int, padding: PaddingLike, rank: int):
  """Fill mode and pads of the stride-1 blur (the pads Zhang 2019 uses before subsampling)."""
  spatial = tuple(x.shape[1:-1])
  kernel = (filter_size,) * rank
  try:
    return arithmetic.resolve_padding(padding, spatial, kernel, 1)
  except ValueError as err:
    if isinstance(padding, str) and padding.upper() == "REFLECT":
      raise ValueError(
          f"blur pooling with filter_size={filter_size} and padding='REFLECT' "
          f"needs every spatial axis larger than the pad of {filter_size // 2}: "
          f"got a feature map of spatial shape {spatial}; use a smaller "
          f"filter_size, a larger input, or padding='CIRCULAR'/'SAME'") from err
    raise


def blur_pool(
    x: Array,
    filter_size: int = 3,
    strides: int | Sequence[int] = 2,
    padding: PaddingLike = "REFLECT",
) -> Array:
  """Blur every channel with a binomial filter, then subsample (Zhang 2019).

  The blur is a depthwise convolution (``ops.conv`` with
  ``feature_group_count=C``) whose kernel is ``binomial_filter(filter_size)``
  for every channel. The input is padded as a stride-1 ``'SAME'`` blur would
  be, ``((filter_size - 1) // 2, filter_size // 2)`` per axis, and the
  blurred map is sampled at ``0, s, 2s, ...``, as in Zhang's reference code.

  Args:
    x: ``(N, *spatial, C)`` with 1, 2 or 3 spatial axes, floating.
    filter_size: binomial taps per axis, 1 to 7.
    strides: subsampling factor, an int or one per spatial axis.
    padding: ``'REFLECT'`` (default, as Zhang 2019), ``'CIRCULAR'`` (exactly
      equivariant to shifts that are multiples of the stride when the sizes
      are divisible by it), ``'SAME'`` (zeros) or ``'VALID'`` (no padding).

  Returns:
    ``(N, *spatial_out, C)`` with ``spatial_out = ceil(n / s)`` for the padded
    modes and ``floor((n - filter_size) / s) + 1`` for ``'VALID'``.

  Raises:
    ValueError: for a filter size outside 1..7, a bad padding, or a feature map
      too small for the filter under ``'REFLECT'`` (the message names the
      filter size and the spatial shape).
  """
  if not hasattr(x, "ndim") or x.ndim not in (3, 4, 5):
    raise ValueError(
        f"blur_pool expects (N, *spatial, C) with 1, 2 or 3 spatial axes, channels "
        f"last; got shape {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
  rank = x.ndim - 2
  check_input(x, rank, "x")
  strides = as_tuple(strides, rank, "strides")
  taps = binomial_filter(filter_size, rank)
  mode, pads = _blur_pads(x, filter_size, padding, rank)
  padded = pad_spatial(x, pads, mode)
  if min(n for n in padded.shape[1:-1]) < filter_size:
    raise ValueError(
        f"blur_pool: filter_size={filter_size} is larger than the padded input "
        f"{tuple(padded.shape[1:-1])} (input {tuple(x.shape[1:-1])}, padding {padding!r})")
  channels = x.shape[-1]
  kernel = jnp.broadcast_to(jnp.asarray(taps, x.dtype)[..., None, None], (*taps.shape, 1, channels))
  return conv(padded, kernel, strides=strides, padding="VALID", feature_group_count=channels)


def _stride_tuple(x: Array, stride: int | Sequence[int], what: str) -> tuple[int, ...]:
  if not hasattr(x, "ndim") or x.ndim not in (3, 4, 5):
    raise ValueError(
        f"{what} expects (N, *spatial, C) with 1, 2 or 3 spatial axes, channels "
        f"last; got shape {tuple(getattr(x, 'shape', ())) or type(x).__name__}")
  rank = x.ndim - 2
  check_input(x, rank, "x")
  stride = as_tuple(stride, rank, "stride")
  spatial = tuple(x.shape[1:-1])
  if any(n % s for n, s in zip(spatial, stride)):
    raise ValueError(
        f"{what}: every spatial size must be divisible by the stride, got spatial "
        f"shape {spatial} and stride {stride}; crop or pad the feature map (e.g. "
        f"to {tuple(-(-n // s) * s for n, s in zip(spatial, stride))})")
  return stride


def polyphase_components(x: Array, stride: int | Sequence[int] = 2) -> Array:
  """The ``prod(stride)`` polyphase components of a feature map.

  Component ``k`` has phase ``phi = np.unravel_index(k, stride)`` and holds
  ``x[:, phi[0]::s[0], phi[1]::s[1], ..., :]``: every sample whose position is
  congruent to ``phi`` modulo the stride. Ordinary strided subsampling keeps
  component 0.

  Args:
    x: ``(N, *spatial, C)``, each spatial size divisible by its stride.
    stride: an int or one per spatial axis.

  Returns:
    ``(N, prod(stride), *[n // s], C)``.
  """
  stride = _stride_tuple(x, stride, "polyphase_components")
  parts = []
  for phase in itertools.product(*(range(s) for s in stride)):
    index = (slice(None), *(slice(p, None, s) for p, s in zip(phase, stride)), slice(None))
    parts.append(x[index])
  return jnp.stack(parts, axis=1)


def polyphase_downsample(
    x: Array, stride: int | Sequence[int] = 2, p: float = 2, index: Array | None = None
) -> tuple[Array, Array]:
  """Adaptive polyphase sampling (APS, Chaman & Dokmanić 2021).

  Keeps, for every example, the polyphase component with the largest ``l_p``
  norm over its positions and channels (the first one on ties). If ``x`` is
  circularly shifted, its components are permuted and circularly shifted, so
  the kept component is a circular shift of the one kept for ``x``.

  Args:
    x: ``(N, *spatial, C)``, each spatial size divisible by its stride.
    stride: an int or one per spatial axis.
    p: the norm's order, ``p > 0`` or ``jnp.inf``. The paper uses 2.
    index: ``(N,)`` components to keep instead of choosing by norm: pass the
      index chosen on a residual block's main path to its shortcut, so that
      both paths keep the same phase and their sum stays equivariant.

  Returns:
    ``(y, index)``: ``y`` of shape ``(N, *[n // s], C)`` and ``index`` of shape
    ``(N,)`` (int32), the component kept (see ``polyphase_components``).
  """
  if not isinstance(p, (int, float)) or isinstance(p, bool) or not p > 0:
    raise ValueError(f"p must be a positive number or inf (the order of the l_p norm), got {p!r}")
  components = polyphase_components(x, stride)
  if index is not None:
    index = jnp.asarray(index)
    if index.shape != (x.shape[0],) or not jnp.issubdtype(index.dtype, jnp.integer):
      raise ValueError(
          f"index must be an int array of shape (N,) = ({x.shape[0]},), one component per "
          f"example, got {index.dtype} {tuple(index.shape)}")
    index = index.astype(jnp.int32)
    y = jnp.take_along_axis(components, index.reshape(-1, *(1,) * (components.ndim - 1)), axis=1)
    return y[:, 0], index
  flat = jnp.abs(components.reshape(*components.shape[:2], -1).astype(jnp.float32))
  if math.isinf(p):
    norms = jnp.max(flat, axis=-1)
  else:
    # The p-th root is monotonic: comparing sums of |x|^p picks the same component.
    norms = jnp.sum(flat ** p, axis=-1)
  index = jnp.argmax(norms, axis=1).astype(jnp.int32)
  y = jnp.take_along_axis(components, index.reshape(-1, *(1,) * (components.ndim - 1)), axis=1)
  return y[:, 0], index
