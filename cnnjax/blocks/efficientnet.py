"""EfficientNet's ``MBConv``: expand 1x1, depthwise k x k, squeeze-and-excitation, linear project.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks" (ICML 2019), MobileNetV2's inverted residual with a
squeeze-and-excitation unit (Hu et al., CVPR 2018) and stochastic depth on
the residual branch, in torchvision's layout (``MBConv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.blocks.common import Activation, ConvNormAct, ModuleDef, check_image, pair
from cnnjax.layers.regularization import DropPath, SqueezeExcite
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any


class MBConv(nn.Module):
  """Mobile inverted bottleneck with squeeze-and-excitation.

  ``(N, H, W, C) -> (N, H / s, W / s, features)``::

    h = act(norm(expand(x)))               # 1x1 to C * expand_ratio, absent at ratio 1
    h = act(norm(depthwise_s(h)))          # k x k, one group per channel
    h = se(h)                              # C * se_ratio hidden units (of the input C)
    y = norm(project(h))                   # 1x1, linear
    out = x + drop_path(y)  if strides == 1 and C == features else y

  Submodules: ``expand`` (``ConvNormAct``, when ``expand_ratio != 1``),
  ``depthwise`` (``ConvNormAct``, with its ``downsample``), ``se``
  (``SqueezeExcite``: ``fc1``, ``fc2``), ``project`` (``ConvNormAct``
  without nonlinearity), ``drop_path``.

  Attributes:
    features: output channels.
    expand_ratio: hidden channels are ``int(C * expand_ratio)``.
    conv: convolution factory; norm: norm factory; act: nonlinearity (SiLU).
    strides: stride of the depthwise convolution.
    kernel_size: depthwise kernel (3 or 5 in EfficientNet-B0).
    se_ratio: squeeze units per *input* channel (0.25), at least 1; 0 for no SE.
    drop_path_rate: stochastic depth probability (used on the residual only).
    downsample: antialiased downsampling factory, or None for a strided depthwise.
    padding: ``None`` for symmetric ``k // 2`` padding, or a padding mode.
    dtype, param_dtype: of the squeeze-and-excitation unit (the
      convolutions take theirs from ``conv``).
  """

  features: int
  expand_ratio: float
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.silu
  strides: int | Sequence[int] = 1
  kernel_size: int | Sequence[int] = 3
  se_ratio: float = 0.25
  drop_path_rate: float = 0.0
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    strides = pair(self.strides)
    channels = x.shape[-1]
    hidden = int(channels * self.expand_ratio)
    none = ((0, 0), (0, 0))
    y = x
    if hidden != channels:
      y = ConvNormAct(hidden, (1, 1), conv=self.conv, norm=self.norm, act=self.act,
                      padding=none, name="expand")(y, train)
    y = ConvNormAct(hidden, self.kernel_size, conv=self.conv, norm=self.norm, act=self.act,
                    strides=strides, downsample=self.downsample, padding=self.padding,
                    feature_group_count=hidden, name="depthwise")(y, train)
    if self.se_ratio > 0:
      y = SqueezeExcite(max(1, int(channels * self.se_ratio)), act=self.act, dtype=self.dtype,
                        param_dtype=self.param_dtype, name="se")(y)
    y = ConvNormAct(self.features, (1, 1), conv=self.conv, norm=self.norm, act=None,
                    padding=none, name="project")(y, train)
    if all(s == 1 for s in strides) and channels == self.features:
      y = x + DropPath(self.drop_path_rate, name="drop_path")(y, train)
    return y
