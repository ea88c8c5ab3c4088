"""The grouped and wide bottleneck of ResNeXt and Wide ResNet-50.

Xie et al., "Aggregated Residual Transformations for Deep Neural Networks"
(CVPR 2017) and Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC
2016), as torchvision builds them: ResNet v1.5's ``Bottleneck`` whose 3x3
convolution has ``groups`` groups and ``int(features * base_width / 64) *
groups`` channels. ``groups=1, base_width=64`` is the plain ResNet
bottleneck; ``groups=32, base_width=4`` ResNeXt-50 32x4d;
``base_width=128`` Wide ResNet-50-2.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax.blocks.common import (
    Activation,
    ModuleDef,
    apply_norm,
    check_image,
    conv_padding,
    make_norm,
    pair,
)
from cnnjax.blocks.resnet import _downsample, _shortcut
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class GroupedBottleneck(nn.Module):
  """1x1 reduce, grouped 3x3, 1x1 expand, with a residual connection.

  ``(N, H, W, C) -> (N, H / s, W / s, features * expansion)``; the inner
  width is ``int(features * base_width / 64) * groups``. Names and the
  placement of the stride and of ``downsample`` are those of
  ``cnnjax.blocks.Bottleneck``, so torchvision's ``resnext*`` and
  ``wide_resnet*`` weights import with ResNet's mapping.

  Submodules: ``conv1``, ``norm1``, ``conv2``, ``norm2``, ``downsample``,
  ``conv3``, ``norm3``, ``shortcut_conv``, ``shortcut_norm``,
  ``shortcut_downsample`` (those that apply).

  Attributes:
    features: the stage's base channels (64, 128, 256, 512 in ImageNet models).
    conv, norm, act, strides, downsample, padding: as ``Bottleneck``.
    groups: groups (cardinality) of the 3x3 convolution.
    base_width: inner channels per group at ``features = 64``.
    expansion: output channels per ``features`` (4).
    zero_init_last_norm: initialise ``norm3``'s scale to zero.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  strides: int | Sequence[int] = 1
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None
  zero_init_last_norm: bool = False
  groups: int = 1
  base_width: int = 64
  expansion: int = 4

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    if self.groups < 1 or self.base_width < 1:
      raise ValueError(f"groups and base_width must be >= 1, got {self.groups}, {self.base_width}")
    strides = pair(self.strides)
    antialias = self.downsample is not None and any(s > 1 for s in strides)
    width = int(self.features * (self.base_width / 64.0)) * self.groups
    out = self.features * self.expansion
    none = ((0, 0), (0, 0))
    y = self.conv(width, (1, 1), padding=none, name="conv1")(x)
    y = self.act(apply_norm(make_norm(self.norm, "norm1"), y, train))
    y = self.conv(width, (3, 3), strides=(1, 1) if antialias else strides,
                  padding=conv_padding(self.padding, (3, 3)), feature_group_count=self.groups,
                  name="conv2")(y)
    y = self.act(apply_norm(make_norm(self.norm, "norm2"), y, train))
    index = None
    if antialias:
      y, index = _downsample(self, y, strides)
    y = self.conv(out, (1, 1), padding=none, name="conv3")(y)
    y = apply_norm(make_norm(self.norm, "norm3", self.zero_init_last_norm), y, train)
    return self.act(y + _shortcut(self, x, out, strides, train, index))
