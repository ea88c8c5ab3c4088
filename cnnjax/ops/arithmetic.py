"""Shape, parameter, MAC and receptive-field arithmetic of convolutions.

Everything here is plain Python on integers: no arrays, so it can run before
anything is compiled (to check a configuration, or to count FLOPs for MFU).

Padding is resolved once, here, for every convolution and pooling op of
cnnjax, so that the lax implementation, the loop reference and the im2col
formulation agree on what ``'SAME'``, ``'CIRCULAR'`` or ``'CAUSAL'`` means.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Union

from cnnjax.ops.validation import as_tuple

PaddingLike = Union[str, int, Sequence[int], Sequence[tuple[int, int]]]

#: Padding strings understood by every op. ``'CIRCULAR'`` and ``'REFLECT'`` pad
#: by the same amounts as ``'SAME'`` but with wrapped or mirrored values;
#: ``'CAUSAL'`` (1-D only) pads only on the left so output t sees inputs <= t.
PADDING_MODES = ("VALID", "SAME", "CIRCULAR", "REFLECT", "CAUSAL")


# The one normaliser of per-axis arguments lives with the other checks; the
# private name stays importable for code written against it.
_tuple = as_tuple


def dilated_size(size: int, dilation: int) -> int:
  """Size of an axis of ``size`` elements with ``dilation - 1`` zeros between neighbours."""
  return 0 if size == 0 else (size - 1) * dilation + 1


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TensorFlow/lax ``'SAME'`` padding of one axis: output ``ceil(size / stride)``.

  ``kernel`` is the effective (dilated) kernel size. The extra element of an
  odd total goes to the high side, as in TensorFlow and ``lax``.
  """
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def resolve_padding(
    padding: PaddingLike,
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int] | int | None = None,
    kernel_dilation: Sequence[int] | int | None = None,
    input_dilation: Sequence[int] | int | None = None,
) -> tuple[str, tuple[tuple[int, int], ...]]:
  """Resolves a padding spec into a fill mode and explicit ``(lo, hi)`` pairs.

  Args:
    padding: ``'VALID'``, ``'SAME'``, ``'CIRCULAR'``, ``'REFLECT'``, ``'CAUSAL'``
      (case-insensitive), an int (the same on both sides of every axis), a
      sequence of ints (symmetric, one per axis), or ``((lo, hi), ...)``.
    input_shape: the spatial sizes of the input, without batch and channels.
    kernel_shape: the spatial sizes of the kernel (or pooling window).
    strides, kernel_dilation, input_dilation: per-axis ints, default 1.

  Returns:
    ``(mode, pads)`` where mode is ``'constant'`` (zeros, or -inf for max
    pooling), ``'wrap'`` or ``'reflect'``, and pads holds one ``(lo, hi)`` per
    spatial axis. ``'SAME'``-like pads are computed on the input after input
    dilation, with the effective (dilated) kernel.
  """
  rank = len(input_shape)
  if len(kernel_shape) != rank:
    raise ValueError(
        f"kernel has {len(kernel_shape)} spatial dimensions {tuple(kernel_shape)} "
        f"but the input has {rank} {tuple(input_shape)}")
  strides = as_tuple(strides, rank, "strides")
  kernel_dilation = as_tuple(kernel_dilation, rank, "kernel_dilation")
  input_dilation = as_tuple(input_dilation, rank, "input_dilation")
  sizes = [dilated_size(n, d) for n, d in zip(input_shape, input_dilation)]
  kernels = [dilated_size(k, d) for k, d in zip(kernel_shape, kernel_dilation)]

  if isinstance(padding, str):
    mode = padding.upper()
    if mode not in PADDING_MODES:
      raise ValueError(
          f"padding must be one of {PADDING_MODES} or explicit ((lo, hi), ...) "
          f"pairs, got {padding!r}")
    if mode == "VALID":
      return "constant", ((0, 0),) * rank
    if mode == "CAUSAL":
      if rank != 1:
        raise ValueError(
            f"padding='CAUSAL' is defined for 1-D convolutions only, got "
            f"{rank} spatial dimensions {tuple(input_shape)}")
      return "constant", ((kernels[0] - 1, 0),)
    pads = tuple(same_padding(n, k, s) for n, k, s in zip(sizes, kernels, strides))
    fill = {"SAME": "constant", "CIRCULAR": "wrap", "REFLECT": "reflect"}[mode]
    if fill == "reflect":
      for axis, (n, (lo, hi)) in enumerate(zip(sizes, pads)):
        if max(lo, hi) >= n:
          raise ValueError(
              f"padding='REFLECT' needs a pad smaller than the axis: spatial axis "
              f"{axis} has {n} elements but needs a pad of {max(lo, hi)} for a "
              f"kernel of effective size {kernels[axis]}; use a larger input or "
              f"'CIRCULAR'/'SAME' padding")
    return fill, pads

  if isinstance(padding, int):
    pads = ((padding, padding),) * rank
  else:
    items = tuple(padding)
    if len(items) != rank:
      raise ValueError(
          f"explicit padding needs one entry per spatial dimension ({rank}), got "
          f"{len(items)}: {padding!r}")
    pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in items)
  for pair in pads:
    if len(pair) != 2 or not all(isinstance(p, int) and p >= 0 for p in pair):
      raise ValueError(
          f"explicit padding must be non-negative (lo, hi) int pairs, got {padding!r}")
  return "constant", tuple((int(lo), int(hi)) for lo, hi in pads)


def conv_output_size(
    size: int,
    kernel: int,
    stride: int = 1,
    padding: tuple[int, int] = (0, 0),
    dilation: int = 1,
    input_dilation: int = 1,
) -> int:
  """Output size of one axis: ``floor((n' + lo + hi - k') / stride) + 1``.

  ``n'`` and ``k'`` are the input and kernel sizes after dilation. A result
  below 1 means the kernel does not fit.
  """
  n = dilated_size(size, input_dilation) + padding[0] + padding[1]
  k = dilated_size(kernel, dilation)
  return (n - k) // stride + 1


def conv_output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int] | int | None = None,
    padding: PaddingLike = "VALID",
    kernel_dilation: Sequence[int] | int | None = None,
    input_dilation: Sequence[int] | int | None = None,
) -> tuple[int, ...]:
  """Spatial output shape of a convolution or pooling window.

  Args:
    input_shape: spatial input sizes, e.g. ``(28, 28)`` for an NHWC image.
    kernel_shape: spatial kernel sizes, e.g. ``(3, 3)``.
    strides, padding, kernel_dilation, input_dilation: as in ``ops.conv``.

  Returns:
    The spatial output sizes. Example: a (28, 28) input with a 3x3 kernel,
    ``'VALID'``, gives ``(26, 26)``; with dilation 4, ``(20, 20)``.
  """
  rank = len(input_shape)
  _, pads = resolve_padding(padding, input_shape, kernel_shape, strides,
                            kernel_dilation, input_dilation)
  strides = as_tuple(strides, rank, "strides")
  kernel_dilation = as_tuple(kernel_dilation, rank, "kernel_dilation")
  input_dilation = as_tuple(input_dilation, rank, "input_dilation")
  return tuple(
      conv_output_size(n, k, s, p, d, di) for n, k, s, p, d, di in zip(
          input_shape, kernel_shape, strides, pads, kernel_dilation, input_dilation))


def conv_transpose_output_shape(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    strides: Sequence[int] | int | None = None,
    padding: str = "VALID",
    kernel_dilation: Sequence[int] | int | None = None,
) -> tuple[int, ...]:
  """Spatial output shape of a transposed convolution (``flax.linen.ConvTranspose``).

  ``'VALID'``: ``max((n - 1) * stride + k', n * stride)`` (lax pads a kernel
  smaller than the stride up to the stride); ``'SAME'``: ``n * stride``, where
  ``k'`` is the dilated kernel size. A (28, 28) input with kernel 3 and stride 2
  gives (57, 57); kernel 3 with dilation 2 gives (32, 32).
  """
  rank = len(input_shape)
  strides = as_tuple(strides, rank, "strides")
  kernel_dilation = as_tuple(kernel_dilation, rank, "kernel_dilation")
  mode = padding.upper()
  if mode not in ("VALID", "SAME", "CIRCULAR"):
    raise ValueError(f"padding must be 'VALID', 'SAME' or 'CIRCULAR', got {padding!r}")
  if mode == "VALID":
    return tuple(max((n - 1) * s + dilated_size(k, d), n * s)
                 for n, k, s, d in zip(input_shape, kernel_shape, strides, kernel_dilation))
  return tuple(n * s for n, s in zip(input_shape, strides))


def conv_param_count(
    kernel_shape: Sequence[int],
    in_features: int,
    out_features: int,
    feature_group_count: int = 1,
    use_bias: bool = True,
) -> int:
  """Trainable parameters of a convolution: ``(prod(K) * C_in / groups + 1) * C_out``.

  A 3x3 convolution from 3 to 6 channels has (9 * 3 + 1) * 6 = 168.
  """
  if in_features % feature_group_count or out_features % feature_group_count:
    raise ValueError(
        f"in_features ({in_features}) and out_features ({out_features}) must "
        f"both be divisible by feature_group_count ({feature_group_count})")
  taps = math.prod(kernel_shape) * (in_features // feature_group_count)
  return (taps + int(use_bias)) * out_features


def dense_param_count(in_features: int, out_features: int, use_bias: bool = True) -> int:
  """Trainable parameters of a dense layer: ``(C_in + 1) * C_out`` (3072 -> 6: 18,438)."""
  return (in_features + int(use_bias)) * out_features


def conv_macs(
    input_shape: Sequence[int],
    kernel_shape: Sequence[int],
    in_features: int,
    out_features: int,
    strides: Sequence[int] | int | None = None,
    padding: PaddingLike = "VALID",
    kernel_dilation: Sequence[int] | int | None = None,
    feature_group_count: int = 1,
    input_dilation: Sequence[int] | int | None = None,
) -> int:
  """Multiply-accumulates of one example: ``prod(out) * prod(K) * C_in / groups * C_out``.

  FLOPs are ``2 * MACs`` (a multiply and an add); the bias is not counted.
  """
  out = conv_output_shape(input_shape, kernel_shape, strides, padding,
                          kernel_dilation, input_dilation)
  return (math.prod(out) * math.prod(kernel_shape) *
          (in_features // feature_group_count) * out_features)


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
  """Receptive field of a stack of layers, one axis.

  Attributes:
    size: how many input pixels one output unit sees.
    jump: the cumulative stride, the distance in input pixels between two
      neighbouring output units.
    sizes: ``size`` after each layer.
    jumps: ``jump`` after each layer.
  """
  size: int
  jump: int
  sizes: tuple[int, ...]
  jumps: tuple[int, ...]


def receptive_field(layers: Sequence[Sequence[int] | int]) -> ReceptiveField:
  """Receptive field and cumulative stride of a stack of layers along one axis.

  Args:
    layers: one entry per layer, ``kernel`` or ``(kernel, stride)`` or
      ``(kernel, stride, dilation)``; pooling windows count as layers.

  Returns:
    A ``ReceptiveField``. The rule: ``r <- r + (k' - 1) * j`` and
    ``j <- j * s`` with ``k'`` the dilated kernel; two 3x3 layers see 5x5,
    three see 7x7.
  """
  size, jump = 1, 1
  sizes, jumps = [], []
  for layer in layers:
    spec = (layer,) if isinstance(layer, int) else tuple(layer)
    if not 1 <= len(spec) <= 3:
      raise ValueError(f"a layer is kernel, (kernel, stride) or (kernel, stride, dilation), got {layer!r}")
    kernel, stride, dilation = (tuple(spec) + (1, 1))[:3]
    size += (dilated_size(kernel, dilation) - 1) * jump
    jump *= stride
    sizes.append(size)
    jumps.append(jump)
  return ReceptiveField(size, jump, tuple(sizes), tuple(jumps))
