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


import flax.linen as nn
import jax

from cnnjax.blocks import common
from cnnjax.blocks.resnet import ResidualBlock, bottleneck

Array = jax.Array


class GroupedBottleneck(ResidualBlock):
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

  groups: int = 1
  base_width: int = 64
  expansion: int = 4

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    if self.groups < 1 or self.base_width < 1:
      raise ValueError(f"groups and base_width must be >= 1, got {self.groups}, {self.base_width}")
    width = int(self.features * (self.base_width / 64.0)) * self.groups
    return bottleneck(self, x, train, width, self.features * self.expansion,
                      feature_group_count=self.groups)
