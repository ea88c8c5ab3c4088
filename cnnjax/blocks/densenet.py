"""DenseNet's ``DenseBlock`` (concatenating BN-ReLU-conv layers) and ``Transition``.

Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017),
DenseNet-BC as torchvision builds it: each layer is BN-ReLU-1x1 conv to
``bn_size * growth_rate`` channels, BN-ReLU-3x3 conv to ``growth_rate``, and
its output is concatenated to its input; a transition is BN-ReLU-1x1 conv
(halving the channels) and a 2x2 average pool of stride 2.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import Activation, ModuleDef, apply_norm, check_image, make_norm
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class DenseLayer(nn.Module):
  """BN-act-1x1 conv, BN-act-3x3 conv: ``(N, H, W, C) -> (N, H, W, growth_rate)`` new features.

  Submodules: ``norm1``, ``conv1``, ``norm2``, ``conv2``, ``dropout``.

  Attributes:
    growth_rate: channels the layer adds (32 in DenseNet-121).
    bn_size: the bottleneck has ``bn_size * growth_rate`` channels (4).
    conv, norm, act: factories as every block's.
    dropout_rate: dropout on the new features in training (0 in torchvision's models).
    padding: ``None`` for symmetric padding of the 3x3, or a padding mode.
  """

  growth_rate: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  bn_size: int = 4
  dropout_rate: float = 0.0
  padding: PaddingLike | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """The ``growth_rate`` new channels computed from ``(N, H, W, C)``."""
    y = self.act(apply_norm(make_norm(self.norm, "norm1"), x, train))
    y = self.conv(self.bn_size * self.growth_rate, (1, 1), padding=((0, 0), (0, 0)),
                  name="conv1")(y)
    y = self.act(apply_norm(make_norm(self.norm, "norm2"), y, train))
    y = self.conv(self.growth_rate, (3, 3),
                  padding=((1, 1), (1, 1)) if self.padding is None else self.padding,
                  name="conv2")(y)
    if self.dropout_rate > 0:
      y = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(y)
    return y


class DenseBlock(nn.Module):
  """``num_layers`` dense layers, each fed the concatenation of all earlier outputs.

  ``(N, H, W, C) -> (N, H, W, C + num_layers * growth_rate)``.

  Submodules: ``layer1`` ... ``layer{num_layers}`` (``DenseLayer``).

  Attributes:
    num_layers: layers in the block (6, 12, 24, 16 in DenseNet-121).
    growth_rate, bn_size, conv, norm, act, dropout_rate, padding: as ``DenseLayer``.
  """

  num_layers: int
  growth_rate: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  bn_size: int = 4
  dropout_rate: float = 0.0
  padding: PaddingLike | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    for i in range(self.num_layers):
      new = DenseLayer(self.growth_rate, self.conv, self.norm, self.act, self.bn_size,
                       self.dropout_rate, self.padding, name=f"layer{i + 1}")(x, train)
      x = jnp.concatenate([x, new.astype(x.dtype)], axis=-1)
    return x


class Transition(nn.Module):
  """BN-act-1x1 conv to ``features`` channels, then a 2x2 average pool of stride 2.

  ``(N, H, W, C) -> (N, H // 2, W // 2, features)`` (``ceil`` with a
  ``downsample`` factory: the pool runs at stride 1, ``'SAME'``, and
  ``downsample(strides=2)`` follows).

  Submodules: ``norm``, ``conv``, ``pool``, ``downsample``.

  Attributes:
    features: output channels (half the input's in DenseNet-BC).
    conv, norm, act: factories as every block's.
    downsample: antialiased downsampling factory, or None for the strided pool.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  downsample: ModuleDef | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the transition to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    y = self.act(apply_norm(make_norm(self.norm, "norm"), x, train))
    y = self.conv(self.features, (1, 1), padding=((0, 0), (0, 0)), name="conv")(y)
    if self.downsample is None:
      return layers.AvgPool((2, 2), (2, 2), "VALID", name="pool")(y)
    y = layers.AvgPool((2, 2), (1, 1), "SAME", name="pool")(y)
    return self.downsample(strides=(2, 2), name="downsample")(y)
