"""EfficientNet-B0 in torchvision's layout (5,288,548 parameters at 1000 classes).

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks" (ICML 2019), table 1: a 3x3 stride-2 stem, seven stages of
``MBConv`` with squeeze-and-excitation and SiLU, a 1x1 convolution to 1280
channels, pooling, dropout 0.2, and stochastic depth rising linearly to 0.2
over the blocks. Width and depth multipliers round as torchvision's
(channels to multiples of 8, repeats up).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax import layers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.efficientnet import MBConv
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    check_image_input,
    classifier_head,
    conv_def,
    he_fan_out,
)
from cnnjax.models.mobilenet import make_divisible
from cnnjax.models.registry import register

Array = jax.Array

#: Table 1 of the paper: (expand ratio, kernel, first stride, channels in, channels out, repeats).
EFFICIENTNET_B0_CONFIG = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                          (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                          (6, 3, 1, 192, 320, 1))


class EfficientNet(ImageClassifier):
  """EfficientNet: stem, ``MBConv`` stages, 1x1 conv to 4x the last width, pool, dropout, head.

  ``(N, H, W, C) -> (N, num_classes)``, total stride 32 for B0.

  Submodules: ``stem`` (``ConvNormAct``), ``stage{i}_block{j}`` (``i`` from
  1, ``j`` from 0), ``last_conv``, ``global_pool``, ``dropout``, ``head``;
  ``pre_logits`` is the pooled 1280-unit feature (B0).

  Attributes:
    stages: rows ``(expand, kernel, stride, in, out, repeats)`` (B0's table).
    num_classes: output logits.
    width_multiplier: scales channels (rounded to multiples of 8).
    depth_multiplier: scales repeats (rounded up).
    dropout_rate: dropout before the head (0.2 for B0).
    drop_path_rate: stochastic depth of the last block (0.2), from the
      ``'dropout'`` rng stream.
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  stages: Sequence[Sequence[int]] = EFFICIENTNET_B0_CONFIG
  width_multiplier: float = 1.0
  depth_multiplier: float = 1.0
  dropout_rate: float = 0.2
  drop_path_rate: float = 0.2

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    if self.width_multiplier <= 0 or self.depth_multiplier <= 0:
      raise ValueError(f"width_multiplier and depth_multiplier must be positive, got "
                       f"{self.width_multiplier}, {self.depth_multiplier}")
    check_image_input(x, "EfficientNet", self.input_channels)
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_out)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    down = downsample_def(self.downsample)

    def width(c: int) -> int:
      return make_divisible(c * self.width_multiplier, 8)

    x = ConvNormAct(width(self.stages[0][3]), 3, conv=conv, norm=norm, act=nn.silu, strides=2,
                    downsample=down, name="stem")(x, train)
    repeats = [int(math.ceil(row[5] * self.depth_multiplier)) for row in self.stages]
    total, k = sum(repeats), 0
    for i, ((expand, kernel, stride, _, out, _), n) in enumerate(zip(self.stages, repeats)):
      for j in range(n):
        x = MBConv(width(out), expand, conv=conv, norm=norm, act=nn.silu,
                   strides=stride if j == 0 else 1, kernel_size=kernel,
                   drop_path_rate=self.drop_path_rate * k / total, downsample=down,
                   dtype=self.dtype, param_dtype=self.param_dtype,
                   name=f"stage{i + 1}_block{j}")(x, train)
        k += 1
    x = ConvNormAct(4 * x.shape[-1], 1, conv=conv, norm=norm, act=nn.silu,
                    name="last_conv")(x, train)
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    return classifier_head(self, x)


EfficientNetB0 = register("efficientnet_b0", input_shape=(32, 32, 3))(EfficientNet)
