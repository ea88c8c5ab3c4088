"""Input validation shared by the layers: errors that name expected and received.

A layer checks its input before it creates or reads parameters, so that a
wrong rank or a channels-first array is reported in terms of the layer (its
name, its kernel, the layout it expects) and never surfaces as an XLA trace or
as Flax's generic parameter-shape error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from cnnjax.ops.conv import check_floating

LAYOUTS = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def layout_name(rank: int) -> str:
  """``'NHWC'`` for 2 spatial axes, ``'NWC'`` for 1, ``'NDHWC'`` for 3."""
  return LAYOUTS.get(rank, f"(N, *{rank} spatial, C)")


def kernel_tuple(kernel_size: int | Sequence[int], layer: str) -> tuple[int, ...]:
  """``kernel_size`` as a tuple; an int means one spatial axis, as in ``flax.linen``."""
  if isinstance(kernel_size, int):
    kernel_size = (kernel_size,)
  kernel_size = tuple(kernel_size)
  if not 1 <= len(kernel_size) <= 3 or not all(isinstance(k, int) and k > 0 for k in kernel_size):
    raise ValueError(
        f"{layer}: kernel_size must be a tuple of 1, 2 or 3 positive ints (one per "
        f"spatial axis), got {kernel_size!r}")
  return kernel_size


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

  Args:
    layer: the layer's name, for the message.
    x: the input.
    rank: the number of spatial axes the layer works on.
    kernel_size: the layer's ``kernel_size`` (or window) as the user gave it,
      quoted in the message.
    channels: the number of input channels the existing parameters expect.
    source: where ``channels`` comes from, e.g. ``"(kernel (3, 3, 3, 8))"``.

  Raises:
    TypeError: ``x`` is not an array or not floating.
    ValueError: wrong rank, or a channel count that does not match the
      parameters, with a hint when the input looks channels-first.
  """
  if not hasattr(x, "shape") or not hasattr(x, "ndim"):
    raise TypeError(f"{layer}: input must be an array, got {type(x).__name__}")
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
  if channels is not None and x.shape[-1] != channels:
    hint = ""
    if rank >= 1 and x.shape[1] == channels:
      hint = (f" It looks like NCHW (channels first, {channels} on axis 1); cnnjax is "
              f"channels last: transpose with jnp.moveaxis(x, 1, -1).")
    raise ValueError(
        f"{layer}: expected {layout} input (channels last) with {channels} channels "
        f"{source}, got shape {tuple(x.shape)} with {x.shape[-1]} channels on the "
        f"last axis.{hint}".replace("  ", " "))


def existing_shape(module: nn.Module, collection: str, name: str) -> tuple[int, ...] | None:
  """The shape of an already created variable, or ``None`` (e.g. during ``init``)."""
  if not module.has_variable(collection, name):
    return None
  value = nn.meta.unbox(module.get_variable(collection, name))
  return tuple(value.shape)
