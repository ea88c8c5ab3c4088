"""Up-sampling on the encoder's polyphase grid: ``PolyphaseUpsample`` (APS unpooling).

A parameter-free linen module over ``cnnjax.ops.upsample``, channels last
``(N, H, W, C)``. Paired with ``PolyphaseDownsample`` it makes a U-Net with
circular padding exactly equivariant to circular shifts of any size (see
``cnnjax.models.unet``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax.layers._checks import check_layer_input
from cnnjax.ops import upsample as upsample_ops

Array = jax.Array


class PolyphaseUpsample(nn.Module):
  """Places a map on the polyphase grid an APS layer chose, then fills between the samples.

  From Chaman & Dokmanić 2021 ("Truly shift-equivariant convolutional neural
  networks with adaptive polyphase upsampling"): where a transposed
  convolution always puts its input at positions ``s * k``, this layer puts
  example ``n``'s map at ``phase_n + s * k``, ``phase_n`` being the component
  (``index[n]``) that the matching ``PolyphaseDownsample`` kept. Without an
  index it is component 0, the grid of a strided or blurred encoder.

  ``interpolation='zeros'`` leaves zeros between the samples, so that a
  following convolution makes it a transposed convolution on the chosen grid;
  ``'nearest'`` and ``'linear'`` fill them (a resize on the chosen grid).

  Attributes:
    strides: the up-sampling factor, an int or a pair (the encoder's stride).
    interpolation: ``'zeros'``, ``'nearest'`` or ``'linear'``.
    circular: the interpolation wraps around the border (for circular
      networks) or sees zeros beyond it.

  Input ``(N, h, w, C)`` and ``index`` ``(N,)`` int or None; output
  ``(N, h * s, w * s, C)``.
  """

  strides: int | Sequence[int] = 2
  interpolation: str = "linear"
  circular: bool = True

  @nn.compact
  def __call__(self, x: Array, index: Array | None = None) -> Array:
    check_layer_input("PolyphaseUpsample", x, 2)
    z = upsample_ops.polyphase_upsample(x, index, self.strides)
    return upsample_ops.interpolate_on_grid(z, self.strides, self.interpolation, self.circular)
