"""Depthwise-separable blocks: ``SeparableBlock`` (Xception) and ``InvertedResidual`` (MobileNetV2).

Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions"
(CVPR 2017); Sandler et al., "MobileNetV2: Inverted Residuals and Linear
Bottlenecks" (CVPR 2018). The depthwise convolution is the block's ``conv``
factory with ``feature_group_count = C_in`` (kernel ``(k, k, 1, C_in)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax.blocks import common
from cnnjax.blocks.common import Activation, ModuleDef
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class SeparableBlock(nn.Module):
  """Depthwise k x k, pointwise 1x1, norm, nonlinearity (Xception's unit).

  ``(N, H, W, C) -> (N, H / s, W / s, features)``. The depthwise and the
  pointwise convolutions have no norm or nonlinearity between them, as in
  Xception. ``C * (k * k + features)`` weights (without biases) instead of
  ``k * k * C * features`` for a full convolution.

  With a ``downsample`` factory and ``strides > 1`` the depthwise
  convolution runs at stride 1 and ``downsample`` follows the nonlinearity.

  Submodules: ``depthwise``, ``pointwise``, ``norm``, ``downsample``.

  Attributes:
    features: output channels.
    conv: convolution factory (used for both convolutions).
    norm: norm factory, or None.
    act: nonlinearity, or None.
    kernel_size: depthwise kernel (int or pair).
    strides: stride of the depthwise convolution.
    depth_multiplier: depthwise output channels per input channel.
    downsample: antialiased downsampling factory, or None.
    padding: ``None`` for symmetric ``k // 2`` padding, or a padding mode.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation | None = nn.relu
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  depth_multiplier: int = 1
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    kernel, strides = common.pair(self.kernel_size), common.pair(self.strides)
    antialias = self.downsample is not None and any(s > 1 for s in strides)
    channels = x.shape[-1]
    y = self.conv(channels * self.depth_multiplier, kernel,
                  strides=(1, 1) if antialias else strides,
                  padding=common.conv_padding(self.padding, kernel),
                  feature_group_count=channels, name="depthwise")(x)
    y = self.conv(self.features, (1, 1), padding=((0, 0), (0, 0)), name="pointwise")(y)
    y = common.apply_norm(common.make_norm(self.norm, "norm"), y, train)
    if self.act is not None:
      y = self.act(y)
    if antialias:
      y = self.downsample(strides=strides, name="downsample")(y)
    return y


class InvertedResidual(nn.Module):
  """Expand 1x1, depthwise 3x3, linear project 1x1; residual when the shape is kept.

  ``(N, H, W, C) -> (N, H / s, W / s, features)``::

    y = norm(project(act(norm(depthwise_s(act(norm(expand(x))))))))
    out = x + y   if strides == 1 and C == features else y

  The projection is linear (no nonlinearity): the "linear bottleneck". With
  ``expand_ratio == 1`` there is no expansion (MobileNetV2's first block).

  Submodules: ``expand`` (``ConvNormAct``, when ``expand_ratio != 1``),
  ``depthwise`` (``ConvNormAct``, with its ``downsample``), ``project_conv``,
  ``project_norm``.

  Attributes:
    features: output channels.
    expand_ratio: hidden channels are ``round(C * expand_ratio)``.
    conv: convolution factory.
    norm: norm factory, or None.
    act: nonlinearity (ReLU6 by default, as in MobileNetV2).
    strides: stride of the depthwise convolution.
    kernel_size: depthwise kernel (3 in MobileNetV2).
    downsample: antialiased downsampling factory, or None.
    padding: ``None`` for symmetric ``k // 2`` padding, or a padding mode.
  """

  features: int
  expand_ratio: float
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu6
  strides: int | Sequence[int] = 1
  kernel_size: int | Sequence[int] = 3
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    strides = common.pair(self.strides)
    channels = x.shape[-1]
    hidden = int(round(channels * self.expand_ratio))
    y = x
    if self.expand_ratio != 1:
      y = common.ConvNormAct(hidden, (1, 1), conv=self.conv, norm=self.norm, act=self.act,
                      padding=((0, 0), (0, 0)), name="expand")(y, train)
    y = common.ConvNormAct(hidden, self.kernel_size, conv=self.conv, norm=self.norm,
                    act=self.act, strides=strides, downsample=self.downsample,
                    padding=self.padding, feature_group_count=hidden,
                    name="depthwise")(y, train)
    y = self.conv(self.features, (1, 1), padding=((0, 0), (0, 0)), name="project_conv")(y)
    y = common.apply_norm(common.make_norm(self.norm, "project_norm"), y, train)
    if all(s == 1 for s in strides) and channels == self.features:
      y = y + x
    return y
