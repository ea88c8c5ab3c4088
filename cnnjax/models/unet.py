"""U-Net: an encoder-decoder with skip connections for dense prediction.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation" (MICCAI 2015), with padded convolutions (the output has
the input's size), BatchNorm after every convolution, and the down- and
up-sampling chosen by fields:

* ``downsample``: ``'stride'`` (a 2x2 max-pool of stride 2), ``'blur'``
  (``MaxBlurPool``, Zhang 2019) or ``'aps'`` (a dense 2x2 max-pool, then
  ``PolyphaseDownsample``, Chaman & Dokmanić 2021);
* ``upsample``: ``'transpose'`` (zeros inserted on the grid, then a learnt 3x3
  convolution: a stride-2 transposed convolution) or ``'resize'`` (bilinear
  interpolation on the grid, then a 3x3 convolution).

"The grid" is where each decoder stage puts its input: the polyphase
component its encoder stage kept (``PolyphaseUpsample`` with the APS index),
or component 0 for ``'stride'`` and ``'blur'``. With ``padding='CIRCULAR'``
and ``downsample='aps'`` the whole network is exactly equivariant to circular
shifts of any size, ``f(roll(x, t)) == roll(f(x), t)`` (in evaluation mode,
and in training mode too since BatchNorm's statistics are shift-invariant),
up to floating-point rounding and exact ties between polyphase norms.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import ConvNormAct
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    check_image_input,
    conv_def,
    field,
    he_fan_out,
)
from cnnjax.models.registry import register
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array

DOWNSAMPLE = ("stride", "blur", "aps")
UPSAMPLE = ("transpose", "resize")


class UNet(ImageClassifier):
  """U-Net: ``(N, H, W, C) -> (N, H, W, num_classes)`` per-pixel logits (float32).

  ``len(features)`` encoder stages of two 3x3 ConvNormAct each, a
  down-sampling by 2 after each, a bottleneck of two ConvNormAct with
  ``2 * features[-1]`` channels, then one decoder stage per encoder stage:
  up-sampling by 2 and a 3x3 ConvNormAct to the stage's channels,
  concatenation with the encoder stage's output (the skip connection), two
  3x3 ConvNormAct. A 1x1 convolution named ``head`` gives the logits; its
  input is sown as ``('intermediates', 'pre_logits')``. ``H`` and ``W`` must be
  divisible by ``2 ** len(features)``.

  Submodules: ``enc{i}_conv{1,2}``, ``enc{i}_pool`` (and ``enc{i}_aps``),
  ``bottleneck_conv{1,2}``, ``dec{i}_up``, ``dec{i}_upconv``,
  ``dec{i}_conv{1,2}``, ``head``.

  Attributes:
    num_classes: logits per pixel (for regression maps: outputs per pixel).
    features: channels of the encoder stages, e.g. ``(16, 32, 64)``.
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    upsample: ``'transpose'`` or ``'resize'``.
    padding: of every convolution and pool; ``'CIRCULAR'`` (default, for exact
      circular equivariance) or ``'SAME'``.
    act: nonlinearity.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  num_classes: int = field(11)
  features: Sequence[int] = (16, 32, 64)
  upsample: str = "transpose"
  padding: PaddingLike = "CIRCULAR"
  act: Callable[[Array], Array] = nn.relu

  def _circular(self) -> bool:
    return isinstance(self.padding, str) and self.padding.upper() == "CIRCULAR"

  def _pool(self, x: Array, name: str) -> tuple[Array, Array | None]:
    """Down-sampling by 2; also the polyphase component kept (APS) or None."""
    circular = self._circular()
    if self.downsample == "stride":
      return layers.MaxPool((2, 2), (2, 2), "VALID", name=name)(x), None
    if self.downsample == "blur":
      return layers.MaxBlurPool(
          (2, 2), pool_padding="CIRCULAR" if circular else "SAME",
          padding="CIRCULAR" if circular else "REFLECT", name=name)(x), None
    x = layers.MaxPool((2, 2), (1, 1), "CIRCULAR" if circular else "SAME", name=name)(x)
    return layers.PolyphaseDownsample(strides=2, name=f"{name}_aps").with_index(x)

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, H, W, num_classes)`` logits."""
    if self.downsample not in DOWNSAMPLE:
      raise ValueError(f"downsample must be one of {DOWNSAMPLE}, got {self.downsample!r}")
    if self.upsample not in UPSAMPLE:
      raise ValueError(f"upsample must be one of {UPSAMPLE}, got {self.upsample!r}")
    check_image_input(x, "UNet", self.input_channels)
    factor = 2 ** len(self.features)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(
          f"UNet with {len(self.features)} down-sampling stages needs H and W divisible by "
          f"{factor}, got spatial size {tuple(x.shape[1:3])} (shape {tuple(x.shape)}); pad or "
          f"crop the images, or use fewer stages (features)")
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_out)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    block = functools.partial(ConvNormAct, kernel_size=3, conv=conv, norm=norm, act=self.act,
                              padding=self.padding)
    skips, indices = [], []
    for i, f in enumerate(self.features):
      x = block(f, name=f"enc{i + 1}_conv1")(x, train)
      x = block(f, name=f"enc{i + 1}_conv2")(x, train)
      skips.append(x)
      x, index = self._pool(x, f"enc{i + 1}_pool")
      indices.append(index)
    bottom = 2 * self.features[-1]
    x = block(bottom, name="bottleneck_conv1")(x, train)
    x = block(bottom, name="bottleneck_conv2")(x, train)
    interpolation = "zeros" if self.upsample == "transpose" else "linear"
    for i in reversed(range(len(self.features))):
      f = self.features[i]
      x = layers.PolyphaseUpsample(2, interpolation, self._circular(), name=f"dec{i + 1}_up")(
          x, indices[i])
      x = block(f, name=f"dec{i + 1}_upconv")(x, train)
      x = jnp.concatenate([skips[i], x.astype(skips[i].dtype)], axis=-1)
      x = block(f, name=f"dec{i + 1}_conv1")(x, train)
      x = block(f, name=f"dec{i + 1}_conv2")(x, train)
    self.sow("intermediates", "pre_logits", x)
    logits = layers.Conv(self.num_classes, (1, 1), padding="VALID", dtype=self.dtype,
                         param_dtype=self.param_dtype, name="head")(x)
    return jnp.asarray(logits, jnp.float32)


UNetSmall = register("unet", input_shape=(16, 16, 1))(UNet)
