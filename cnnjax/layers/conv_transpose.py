"""Transposed convolution, as a fractionally strided ``ops.conv``, and its PyTorch mapping.

A transposed convolution with stride ``s`` inserts ``s - 1`` zeros between
the input elements (``lhs_dilation=s``), pads, and runs an ordinary stride-1
convolution. With ``transpose_kernel=True`` and a kernel ``W`` of shape
``(*K, C_in_conv, C_out_conv)``, ``ConvTranspose`` is the transpose (the
vector-Jacobian product with respect to the input) of the strided ``Conv``
with the same kernel ``W``: it maps the ``C_out_conv`` channels of the
convolution's output back to its ``C_in_conv`` input channels, which is how
the gradient of a convolution reaches its input, and how decoders upsample.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype
from jax import lax

from cnnjax import ops
from cnnjax.layers.conv import _ConvBase, _kw
from cnnjax.ops.arithmetic import PaddingLike, dilated_size
from cnnjax.ops.validation import as_tuple

Array = jax.Array
Dtype = Any
Initializer = Any
IntSeq = None | int | Sequence[int]


def conv_transpose_padding(
    padding: PaddingLike, kernel_size: Sequence[int], strides: Sequence[int],
    kernel_dilation: Sequence[int],
) -> tuple[tuple[int, int], ...]:
  """Pads of the fractionally strided convolution behind a transposed one.

  The pads apply to the input after ``lhs_dilation=strides``, as in
  ``lax.conv_transpose``: for ``'VALID'`` ``(k' - 1, k' - 1 + max(s - k', 0))``
  (output ``(n - 1) * s + k'``, or ``n * s`` when ``k' < s``), for
  ``'SAME'`` a total of ``k' + s - 2`` (output ``n * s``), where ``k'`` is the
  dilated kernel. ``'CIRCULAR'`` uses the ``'VALID'`` pads (the output is then
  wrapped). Explicit ``((lo, hi), ...)`` pairs (or ints) are returned as given.
  """
  rank = len(kernel_size)
  if isinstance(padding, str):
    mode = padding.upper()
    if mode not in ("SAME", "VALID", "CIRCULAR"):
      raise ValueError(
          f"ConvTranspose: padding must be 'SAME', 'VALID', 'CIRCULAR' or explicit "
          f"((lo, hi), ...) pairs, got {padding!r}")
    pads = []
    for k, s, d in zip(kernel_size, strides, kernel_dilation):
      k = dilated_size(k, d)
      if mode == "SAME":
        total = k + s - 2
        lo = k - 1 if s > k - 1 else math.ceil(total / 2)
      else:
        total = k + s - 2 + max(k - s, 0)
        lo = k - 1
      pads.append((lo, total - lo))
    return tuple(pads)
  if isinstance(padding, int):
    return ((padding, padding),) * rank
  items = tuple(padding)
  if len(items) != rank:
    raise ValueError(
        f"ConvTranspose: explicit padding needs one entry per spatial axis ({rank}), "
        f"got {padding!r}")
  pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in items)
  if not all(len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p) for p in pads):
    raise ValueError(f"ConvTranspose: explicit padding must be non-negative (lo, hi) int pairs, got {padding!r}")
  return pads


def _wrap_circular(y: Array, periods: Sequence[int], transpose_kernel: bool) -> Array:
  """Folds a ``'VALID'`` transposed output onto ``periods`` (input size * stride) per axis.

  The same alignment as ``flax.linen.ConvTranspose``: the output is padded to
  a whole number of periods, centred (the odd element on the high side with
  ``transpose_kernel``, on the low side without), and the periods summed.
  """
  diffs = [-(size - period) % (2 * period) for size, period in zip(y.shape[1:-1], periods)]
  if transpose_kernel:
    pads = [(d // 2, (d + 1) // 2) for d in diffs]
  else:
    pads = [((d + 1) // 2, d // 2) for d in diffs]
  y = jnp.pad(y, [(0, 0), *pads, (0, 0)])
  for axis, period in enumerate(periods, start=1):
    y = y.reshape(y.shape[:axis] + (-1, period) + y.shape[axis + 1:]).sum(axis=axis)
  return y


class ConvTranspose(_ConvBase):
  """Transposed (fractionally strided) convolution, as ``flax.linen.ConvTranspose``.

  Computed as ``ops.conv(x, W', lhs_dilation=strides, padding=pads)`` with
  ``pads`` from ``conv_transpose_padding``, where ``W'`` is the kernel, or
  with ``transpose_kernel=True`` the kernel flipped spatially with its two
  channel axes swapped. Output sizes (``ops.conv_transpose_output_shape``): a
  ``(4, 28, 28, 12)`` input with ``kernel_size=(3, 3), strides=(2, 2),
  padding='VALID'`` gives ``(4, 57, 57, features)``; with
  ``kernel_dilation=(2, 2)`` and stride 1, ``(4, 32, 32, features)``.

  Relation to ``Conv``: with ``transpose_kernel=True``,
  ``ConvTranspose(features=C_in, strides=s, padding='VALID')`` with kernel
  ``W`` ``(*K, C_in, C_out)`` is the VJP with respect to the input of
  ``Conv(features=C_out, strides=s, padding='VALID')`` with the same ``W``,
  applied to the cotangent of the convolution's output. When
  ``(n - k') % s != 0`` the ``Conv`` input has ``(n - k') % s`` more
  trailing rows, which no output reads and whose gradient is zero. The same
  holds for ``padding='SAME'`` on both sides when ``n % s == 0``.

  PyTorch: ``torch.nn.ConvTranspose2d(C_in, C_out, k, stride=s, padding=p,
  output_padding=op, dilation=d)`` with weight ``(C_in, C_out, kH, kW)`` is
  ``ConvTranspose(C_out, (kH, kW), strides=s, kernel_dilation=d,
  transpose_kernel=True, padding=torch_conv_transpose_padding(...))`` with
  kernel ``kernel_from_torch_conv_transpose(weight)``. Equivalently, with
  ``transpose_kernel=False`` the kernel is the torch weight flipped spatially
  and transposed to ``(kH, kW, C_in, C_out)``. Torch's ``padding=p`` crops
  ``p`` from each side of the ``'VALID'`` output and ``output_padding`` adds
  ``op`` back on the high side: explicit pads ``(d (k - 1) - p,
  d (k - 1) - p + op)`` per axis.

  Attributes:
    features: number of output channels.
    kernel_size: spatial kernel shape; an int means one spatial axis.
    strides: the upsampling factor per spatial axis (``None``: 1). This and
      every attribute after ``kernel_size`` are keyword-only.
    padding: ``'SAME'`` (default, output ``n * s``), ``'VALID'``,
      ``'CIRCULAR'`` (``'VALID'`` folded periodically onto ``n * s``), or
      explicit ``((lo, hi), ...)`` pads of the dilated input.
    kernel_dilation: per spatial axis (``None``: 1).
    use_bias: add a ``(features,)`` bias.
    dtype, param_dtype, precision, kernel_init, bias_init: as in ``Conv``.
    transpose_kernel: store the kernel as ``(*K, features, C_in)``, the
      layout of the ``Conv`` it transposes, and flip it when applied.
  """

  features: int
  kernel_size: int | Sequence[int]
  transpose_kernel: bool = _kw(False)

  def kernel_shape(self, in_features: int) -> tuple[int, ...]:
    if self.transpose_kernel:
      return (*self.kernel_size_tuple(), self.features, in_features)
    return (*self.kernel_size_tuple(), in_features, self.features)

  def kernel_channels(self, shape: tuple[int, ...]) -> int:
    return shape[-1] if self.transpose_kernel else shape[-2]

  def kernel_source(self, shape: tuple[int, ...]) -> str:
    return f"(its kernel has shape {shape}, transpose_kernel={self.transpose_kernel})"

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, *spatial, C_in)`` to ``(N, *spatial_out, features)``."""
    kernel_size = self.kernel_size_tuple()
    rank = len(kernel_size)
    kernel, bias = self.declare_kernel(inputs)
    strides = as_tuple(self.strides, rank, "strides")
    dilation = as_tuple(self.kernel_dilation, rank, "kernel_dilation")
    pads = conv_transpose_padding(self.padding, kernel_size, strides, dilation)
    x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    if self.transpose_kernel:
      kernel = jnp.swapaxes(jnp.flip(kernel, tuple(range(rank))), -1, -2)
    y = ops.conv(x, kernel, None, strides=1, padding=pads, lhs_dilation=strides,
                 rhs_dilation=dilation, precision=self.precision)
    if isinstance(self.padding, str) and self.padding.upper() == "CIRCULAR":
      periods = [n * s for n, s in zip(inputs.shape[1:-1], strides)]
      y = _wrap_circular(y, periods, self.transpose_kernel)
    if bias is not None:
      y = y + bias.astype(y.dtype)
    return y


def torch_conv_transpose_padding(
    kernel_size: Sequence[int],
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
) -> tuple[tuple[int, int], ...]:
  """Explicit ``ConvTranspose`` pads equal to PyTorch's ``ConvTranspose{1,2,3}d`` arguments.

  ``(d (k - 1) - p, d (k - 1) - p + op)`` per axis: the ``'VALID'`` pads
  ``d (k - 1)`` less torch's ``padding`` on each side, plus
  ``output_padding`` on the high side. Torch's output size
  ``(n - 1) s - 2 p + d (k - 1) + op + 1`` follows.

  Raises:
    ValueError: if ``p > d (k - 1)``: a crop larger than the kernel's reach
      would need negative pads.
  """
  rank = len(kernel_size)
  padding, output_padding, dilation = (
      (v,) * rank if isinstance(v, int) else tuple(v) for v in (padding, output_padding, dilation))
  if not len(padding) == len(output_padding) == len(dilation) == rank:
    raise ValueError(
        f"padding {padding}, output_padding {output_padding} and dilation {dilation} "
        f"need one entry per spatial axis of kernel_size {tuple(kernel_size)}")
  pads = []
  for k, p, op, d in zip(kernel_size, padding, output_padding, dilation):
    reach = d * (k - 1)
    if p > reach or p < 0 or op < 0:
      raise ValueError(
          f"torch padding={p} (output_padding={op}) needs 0 <= padding <= "
          f"dilation * (kernel - 1) = {reach} for kernel {k}, dilation {d}")
    pads.append((reach - p, reach - p + op))
  return tuple(pads)


def kernel_from_torch_conv_transpose(weight: Any) -> Array:
  """A torch ``ConvTranspose`` weight ``(C_in, C_out, *K)`` as a ``transpose_kernel=True`` kernel ``(*K, C_out, C_in)``.

  For ``transpose_kernel=False`` flip the result spatially and swap its last
  two axes: ``jnp.swapaxes(jnp.flip(k, range(len(K))), -1, -2)``.
  """
  weight = jnp.asarray(np.asarray(weight))
  rank = weight.ndim - 2
  if rank not in (1, 2, 3):
    raise ValueError(f"expected a torch ConvTranspose weight (C_in, C_out, *K) with 1-3 spatial axes, got shape {tuple(weight.shape)}")
  return jnp.transpose(weight, (*range(2, 2 + rank), 1, 0))
