"""DenseNet-121 in torchvision's layout (7,978,856 parameters at 1000 classes).

Huang et al., "Densely Connected Convolutional Networks" (CVPR 2017),
DenseNet-BC-121: a 7x7 stride-2 stem and 3x3 max-pool, four ``DenseBlock``
of (6, 12, 24, 16) layers with growth rate 32 and bottleneck ``4 x 32``,
transitions halving the channels, a final BatchNorm-ReLU, pooling, head.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax import layers
from cnnjax.layers import initializers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.densenet import DenseBlock, Transition
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    check_image_input,
    classifier_head,
    conv_def,
    max_pool,
)
from cnnjax.models.registry import register

Array = jax.Array

#: torchvision's DenseNet initialisation: Kaiming normal, fan-in.
he_fan_in = initializers.variance_scaling(2.0, "fan_in", "normal")


class DenseNet(ImageClassifier):
  """DenseNet-BC: stem, dense blocks and transitions, BatchNorm-ReLU, global pool, head.

  ``(N, H, W, C) -> (N, num_classes)``, total stride 32.

  Submodules: ``stem`` (``ConvNormAct``), ``stem_pool``, ``block{i}``
  (``DenseBlock``, ``i`` from 1), ``transition{i}`` (after every block but
  the last), ``final_norm``, ``global_pool``, ``head``; ``pre_logits`` is
  the pooled feature (1024 channels for DenseNet-121).

  Attributes:
    block_config: layers per dense block ((6, 12, 24, 16)).
    growth_rate: channels each layer adds (32).
    num_init_features: channels of the stem (64).
    bn_size: bottleneck width in units of ``growth_rate`` (4).
    num_classes: output logits.
    dropout_rate: dropout on each layer's new features (0).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'`` (stem, pool and
      transitions' pools).
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  block_config: Sequence[int] = (6, 12, 24, 16)
  growth_rate: int = 32
  num_init_features: int = 64
  bn_size: int = 4
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    check_image_input(x, "DenseNet", self.input_channels)
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_in)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    down = downsample_def(self.downsample)
    x = ConvNormAct(self.num_init_features, 7, conv=conv, norm=norm, act=nn.relu, strides=2,
                    downsample=down, name="stem")(x, train)
    x = max_pool(x, 3, 2, ((1, 1), (1, 1)), down, "stem_pool")
    for i, n in enumerate(self.block_config):
      x = DenseBlock(n, self.growth_rate, conv, norm, bn_size=self.bn_size,
                     dropout_rate=self.dropout_rate, name=f"block{i + 1}")(x, train)
      if i < len(self.block_config) - 1:
        x = Transition(x.shape[-1] // 2, conv, norm, downsample=down,
                       name=f"transition{i + 1}")(x, train)
    x = nn.relu(norm(name="final_norm")(x, train=train))
    x = layers.GlobalAvgPool(name="global_pool")(x)
    return classifier_head(self, x)


DenseNet121 = register("densenet121", input_shape=(32, 32, 3))(DenseNet)
