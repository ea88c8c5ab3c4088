"""Deformable convolution (Dai et al., 2017, "Deformable Convolutional Networks").

Each output position ``p`` of a ``kH x kW`` convolution reads its taps at
``p * stride + tap * dilation + Δ(p, tap)`` instead of on the regular grid,
where the offsets ``Δ`` (one ``(dy, dx)`` per tap) are predicted from the
input by an ordinary convolution. Fractional positions are read by bilinear
interpolation, zero outside the image, so the output is differentiable in the
offsets, and the offset convolution learns where to look.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from cnnjax.layers.conv import Conv, _ConvBase, _kw
from cnnjax.ops.arithmetic import PaddingLike, resolve_padding
from cnnjax.ops.validation import as_tuple
from cnnjax.ops.conv import pad_spatial

Array = jax.Array
Dtype = Any
Initializer = Any
IntSeq = None | int | Sequence[int]


def bilinear_sample(image: Array, y: Array, x: Array) -> Array:
  """Reads ``image`` at fractional positions, bilinearly, zero outside.

  Args:
    image: ``(N, H, W, C)``.
    y, x: ``(N, *positions)`` float row and column coordinates, in pixels,
      ``0`` the centre of the first row or column.

  Returns:
    ``(N, *positions, C)``: each value is the weighted sum of the four
    neighbouring pixels, neighbours outside the image counting as zero (so a
    position more than one pixel outside reads zero).
  """
  n, h, w, c = image.shape
  positions = y.shape[1:]
  y = y.reshape(n, -1).astype(jnp.float32)
  x = x.reshape(n, -1).astype(jnp.float32)
  y0, x0 = jnp.floor(y), jnp.floor(x)
  # Weights written as (1 - f, f) so their derivative is exact at integers too.
  fy, fx = y - y0, x - x0
  flat = image.reshape(n, h * w, c)
  out = jnp.zeros((n, y.shape[1], c), image.dtype)
  for dy in (0, 1):
    for dx in (0, 1):
      yc, xc = y0 + dy, x0 + dx
      weight = (fy if dy else 1 - fy) * (fx if dx else 1 - fx)
      inside = (yc >= 0) & (yc <= h - 1) & (xc >= 0) & (xc <= w - 1)
      index = (jnp.clip(yc, 0, h - 1) * w + jnp.clip(xc, 0, w - 1)).astype(jnp.int32)
      values = jnp.take_along_axis(flat, index[..., None], axis=1)
      out = out + values * jnp.where(inside, weight, 0.0).astype(image.dtype)[..., None]
  return out.reshape(n, *positions, c)


class DeformableConv2D(_ConvBase):
  """2-D deformable convolution (DCN v1, Dai et al. 2017), channels last.

  An offset ``Conv`` (submodule ``offset``) with the same ``kernel_size``,
  ``strides``, ``padding`` and ``kernel_dilation`` maps the input to
  ``2 * kH * kW`` channels: for tap ``t`` (row-major over the kernel),
  channel ``2 t`` is its ``dy`` and ``2 t + 1`` its ``dx``, in pixels. The
  input is sampled bilinearly (zero outside the image, or outside the
  ``'CIRCULAR'``/``'REFLECT'``-padded image) at the shifted taps, and the
  kernel is applied as one matrix product of the sampled
  ``(N, H', W', kH * kW * C_in)`` taps with ``kernel`` reshaped to
  ``(kH * kW * C_in, features)``.

  The offset convolution is initialised to zero, so a fresh layer computes
  exactly the ``Conv`` with the same ``kernel`` and ``bias`` (whose
  parameters it can load).

  Attributes:
    features: output channels.
    kernel_size: ``(kH, kW)``, or an int for a square kernel.
    strides, padding, kernel_dilation: as in ``Conv`` (shared by the offset
      convolution); ``'CAUSAL'`` is 1-D only and not accepted.
    use_bias: add a ``(features,)`` bias.
    dtype, param_dtype, precision, kernel_init, bias_init: as in ``Conv``.
    offset_init: initializer of the offset convolution's kernel and bias
      (zeros).
  """

  features: int
  kernel_size: int | Sequence[int]
  offset_init: Initializer = _kw(nn.initializers.zeros_init())

  int_kernel_rank: ClassVar[int] = 2

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, H, W, C_in)`` to ``(N, H', W', features)``, ``H', W'`` as for ``Conv``."""
    kernel_size = self.kernel_size_tuple()
    if len(kernel_size) != 2:
      raise ValueError(f"{self.layer_name}: kernel_size must be (kH, kW) positive ints, got {self.kernel_size!r}")
    strides = as_tuple(self.strides, 2, "strides")
    dilation = as_tuple(self.kernel_dilation, 2, "kernel_dilation")
    taps = kernel_size[0] * kernel_size[1]
    kernel, bias = self.declare_kernel(inputs)
    n, h, w, c_in = inputs.shape
    offsets = Conv(
        2 * taps, kernel_size, strides=strides, padding=self.padding,
        kernel_dilation=dilation, dtype=self.dtype, param_dtype=self.param_dtype,
        precision=self.precision, kernel_init=self.offset_init,
        bias_init=self.offset_init, name="offset")(inputs)  # (N, H', W', 2 * taps)
    x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)

    mode, pads = resolve_padding(self.padding, (h, w), kernel_size, strides, dilation)
    if mode != "constant":
      # Wrapped or mirrored borders are data: sample from the padded image.
      x = pad_spatial(x, pads, mode)
      pads = ((0, 0), (0, 0))
    h_out, w_out = offsets.shape[1:3]
    # Regular-grid tap positions (H', kH) and (W', kW) in input coordinates.
    grid_y = (jnp.arange(h_out) * strides[0] - pads[0][0])[:, None] + jnp.arange(kernel_size[0]) * dilation[0]
    grid_x = (jnp.arange(w_out) * strides[1] - pads[1][0])[:, None] + jnp.arange(kernel_size[1]) * dilation[1]
    base_y = jnp.broadcast_to(grid_y[:, None, :, None], (h_out, w_out, *kernel_size)).reshape(h_out, w_out, taps)
    base_x = jnp.broadcast_to(grid_x[None, :, None, :], (h_out, w_out, *kernel_size)).reshape(h_out, w_out, taps)
    offsets = offsets.astype(jnp.float32)
    sampled = bilinear_sample(x, base_y + offsets[..., 0::2], base_x + offsets[..., 1::2])
    columns = sampled.reshape(n, h_out, w_out, taps * c_in)  # (N, H', W', taps * C_in)
    y = jnp.einsum("nhwk,kf->nhwf", columns, kernel.reshape(taps * c_in, self.features),
                   precision=self.precision)
    if bias is not None:
      y = y + bias
    return y


DeformableConv = DeformableConv2D
