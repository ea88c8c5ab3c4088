"""Input validation for every level: errors that name the expected and the received.

Ops, layers, blocks, models (linen and NNX) call these at the boundary where a
user's array enters, so a wrong rank, an integer dtype or a channels-first
array is reported once, in the same words, in terms of the caller (its name,
its kernel, the layout it expects), and never surfaces as an XLA trace or a
generic parameter-shape error. This module imports nothing but jax and
numpy, so every other module can use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

#: Layout names by number of spatial axes.
LAYOUTS = {1: "NWC", 2: "NHWC", 3: "NDHWC"}

#: Channel counts of image data (grey, RGB, RGBA): what axis 1 holds in a channels-first batch.
IMAGE_CHANNELS = (1, 3, 4)


def layout_name(rank: int) -> str:
  """``'NHWC'`` for 2 spatial axes, ``'NWC'`` for 1, ``'NDHWC'`` for 3."""
  return LAYOUTS.get(rank, f"(N, *{rank} spatial, C)")


def as_tuple(value: int | Sequence[int] | None, rank: int, name: str, default: int = 1) -> tuple[int, ...]:
  """A per-spatial-axis argument as a ``rank``-tuple of positive ints.

  An int is broadcast, ``None`` means ``default`` on every axis.

  Raises:
    ValueError: a sequence of the wrong length, non-ints, or values below 1.
  """
  if value is None:
    return (default,) * rank
  if isinstance(value, int):
    value = (value,) * rank
  value = tuple(value)
  if len(value) != rank or not all(isinstance(v, int) for v in value):
    raise ValueError(
        f"{name} must be an int or a sequence of {rank} ints (one per spatial "
        f"dimension), got {value!r}")
  if any(v < 1 for v in value):
    raise ValueError(f"{name} must be positive, got {value!r}")
  return value


def kernel_tuple(kernel_size: int | Sequence[int], layer: str, int_rank: int = 1) -> tuple[int, ...]:
  """A layer's ``kernel_size`` as a tuple of 1 to 3 positive ints.

  An int means ``int_rank`` spatial axes: one for the convolutions, as in
  ``flax.linen`` (``Conv(8, 3)`` is 1-D), two for ``DeformableConv2D``.
  """
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size,) * int_rank
  kernel_size = tuple(kernel_size)
  if not 1 <= len(kernel_size) <= 3 or not all(isinstance(k, int) and k > 0 for k in kernel_size):
    raise ValueError(
        f"{layer}: kernel_size must be a tuple of 1, 2 or 3 positive ints (one per "
        f"spatial axis), got {kernel_size!r}")
  return kernel_size


def check_array(x: Any, what: str, expected: str = "an array") -> None:
  """``TypeError`` unless ``x`` has a ``shape`` and ``ndim`` (a jax or numpy array)."""
  if not hasattr(x, "shape") or not hasattr(x, "ndim"):
    raise TypeError(f"{what} expects {expected}, got {type(x).__name__}")


def check_floating(name: str, x: Any) -> None:
  """Raises a ``TypeError`` unless ``x`` has a floating-point dtype."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
        f"{name} must have a floating-point dtype (float32, bfloat16, float16, "
        f"float64), got {dtype}; cast it first, e.g. {name}.astype(jnp.float32)")


def check_input(x: Any, rank: int, what: str = "input") -> None:
  """Checks that ``x`` is ``(N, *spatial, C)`` with ``rank`` spatial axes and floating."""
  if not hasattr(x, "shape"):
    raise TypeError(f"{what} must be an array, got {type(x).__name__}")
  if x.ndim != rank + 2:
    layout = {1: "(N, W, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}.get(rank, f"(N, *{rank} spatial, C)")
    raise ValueError(
        f"{what} must have rank {rank + 2}, {layout} channels last, for a "
        f"{rank}-D operation; got shape {tuple(x.shape)} (rank {x.ndim})")
  check_floating(what, x)


def looks_channels_first(shape: Sequence[int], channels: int | None = None, *, images: bool = False) -> bool:
  """Whether an ``(N, *spatial, C)`` shape reads better as channels first.

  With ``channels`` (what existing parameters expect): axis 1 has that count
  and the last axis does not. Without, only shapes that are hard to read any
  other way count:

  * ``images=True`` (a model's input, always an image batch): axis 1 holds 1
    or 3 and the last axis more than 4, e.g. ``(N, 3, 32, 32)``.
  * ``images=False`` (a layer's input, which may be a small feature map such
    as ``(N, 3, 3, 512)``): at least 2 spatial axes, axis 1 holds 1, 3 or 4,
    and the last two axes are equal and larger than 4, the square image of
    a channels-first batch; ``(N, 3, 3, 512)`` or ``(N, 7, 7, 3)`` are not.
  """
  shape = tuple(shape)
  if len(shape) < 3:
    return False
  if channels is not None:
    return shape[1] == channels and shape[-1] != channels
  if images:
    return shape[1] in (1, 3) and shape[-1] > 4
  return (len(shape) >= 4 and shape[1] in IMAGE_CHANNELS and shape[-1] == shape[-2] > 4
          and shape[1] < shape[2])


def channels_first_hint(shape: Sequence[int], channels: int | None = None, *, images: bool = False) -> str:
  """The sentence every level appends when an input looks channels-first, or ``''``."""
  if not looks_channels_first(shape, channels, images=images):
    return ""
  return (f" The input looks channels-first (NCHW, {shape[1]} channels on axis 1); "
          f"cnnjax is channels last: transpose with jnp.moveaxis(x, 1, -1).")


def check_layer_input(
    layer: str,
    x: Any,
    rank: int,
    *,
    kernel_size: Any = None,
    channels: int | None = None,
    source: str = "",
) -> None:
  """Checks ``x`` is ``(N, *spatial, C)`` with ``rank`` spatial axes and, if given, ``channels``.

  Called by every layer at ``init`` and at ``apply``. Without ``channels``
  (during ``init``, before the parameters exist) an input that
  ``looks_channels_first`` is refused too, so that a channels-first batch
  never creates parameters for the wrong channel count.

  Args:
    layer: the layer's name, for the message.
    x: the input.
    rank: the number of spatial axes the layer works on.
    kernel_size: the layer's ``kernel_size`` (or window) as the user gave it,
      quoted in the message.
    channels: the number of input channels the existing parameters expect.
    source: where ``channels`` comes from, e.g. ``"(its kernel has shape (3, 3, 3, 8))"``.

  Raises:
    TypeError: ``x`` is not an array or not floating.
    ValueError: wrong rank, a channel count that does not match the
      parameters, or a channels-first looking input.
  """
  check_array(x, f"{layer}:", "an array as input")
  layout = layout_name(rank)
  if x.ndim != rank + 2:
    what = f"kernel_size={kernel_size!r}" if kernel_size is not None else f"{rank} spatial axes"
    hint = ""
    if x.ndim == rank + 1:
      hint = " Add a batch axis, e.g. x[None]."
    elif isinstance(kernel_size, int):
      hint = (f" An int kernel_size means a 1-D convolution, as in flax.linen; "
              f"pass a tuple, e.g. kernel_size={(kernel_size,) * max(x.ndim - 2, 1)!r}.")
    raise ValueError(
        f"{layer}: expected {layout} input of rank {rank + 2} (batch, {rank} spatial, "
        f"channels last) for {what}, got shape {tuple(x.shape)} (rank {x.ndim}).{hint}")
  check_floating(f"{layer} input", x)
  shape = tuple(x.shape)
  if channels is not None and shape[-1] != channels:
    raise ValueError(
        f"{layer}: expected {layout} input (channels last) with {channels} channels "
        f"{source}, got shape {shape} with {shape[-1]} channels on the "
        f"last axis.{channels_first_hint(shape, channels)}".replace("  ", " "))
  if channels is None and looks_channels_first(shape):
    raise ValueError(
        f"{layer}: expected {layout} input (channels last), got shape {shape}: axis 1 "
        f"holds {shape[1]} and the last two axes are equal ({shape[-1]}), which reads "
        f"as a channels-first image batch.{channels_first_hint(shape)}")


def check_image(
    x: Any,
    name: str,
    channels: int | None = None,
    *,
    what: str | None = None,
    min_size: int = 1,
    images: bool = False,
) -> None:
  """Checks that a block's or model's input is a floating ``(N, H, W, C)`` array.

  Args:
    x: the input.
    name: the block or model, for the message.
    channels: the channel count required, or ``None`` for any.
    what: how ``channels`` was set, quoted in the message (a model's
      ``input_channels=3``), or ``None``.
    min_size: the smallest spatial size accepted.
    images: ``x`` is an image batch (a model's input): with ``channels=None``
      refuse an input that looks channels-first (``looks_channels_first``).

  Raises:
    TypeError: not an array, or not floating.
    ValueError: wrong rank, channels, a channels-first looking image batch,
      or spatial size below ``min_size``, naming the expected and received
      shapes.
  """
  check_array(x, name, "an array (N, H, W, C)")
  shape = tuple(x.shape)
  if x.ndim != 4:
    raise ValueError(
        f"{name} expects images (N, H, W, C), channels last (NHWC), rank 4; got "
        f"shape {shape} (rank {x.ndim})"
        + (" — add a batch axis with x[None]" if x.ndim == 3 else ""))
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"{name} expects floating images (e.g. float32 in [0, 1]), got dtype {x.dtype}; "
        f"cast with x.astype(jnp.float32)")
  c = shape[-1]
  if channels is not None:
    if c != channels:
      raise ValueError(
          f"{name} expects NHWC input with {channels} channels{f' ({what})' if what else ''}, got shape "
          f"{shape} with {c} on the last axis.{channels_first_hint(shape, channels)}")
  elif images and looks_channels_first(shape, images=True):
    raise ValueError(
        f"{name} expects NHWC input (channels last), got shape {shape}, which looks "
        f"channels-first (NCHW, {shape[1]} channels on axis 1); transpose with "
        f"jnp.moveaxis(x, 1, -1), or set input_channels={c} if the layout is right")
  if min(shape[1:3]) < min_size:
    raise ValueError(
        f"{name} needs images of at least {min_size}x{min_size}, got spatial size "
        f"{shape[1:3]} (shape {shape})")
