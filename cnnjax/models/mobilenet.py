"""MobileNetV2 in torchvision's layout (3,504,872 parameters at 1000 classes).

Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
(CVPR 2018), table 2, with torchvision's channel rounding for the width
multiplier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.separable import InvertedResidual
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    classifier_head,
    conv_def,
    he_fan_out,
)
from cnnjax.models.registry import register

Array = jax.Array
Dtype = Any

#: Table 2 of the paper: (expansion t, channels c, repeats n, first stride s).
MOBILENET_V2_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
  """Rounds channels to a multiple of ``divisor``, never more than 10% down (torchvision's rule)."""
  min_value = divisor if min_value is None else min_value
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


@register("mobilenet_v2", input_shape=(32, 32, 3))
class MobileNetV2(ImageClassifier):
  """MobileNetV2: 3x3/2 stem, inverted residual blocks, 1x1 to 1280, pool, dropout, head.

  ``(N, H, W, C) -> (N, num_classes)``; in the paper's configuration 17
  blocks and total stride 32.

  Submodules: ``stem`` (``ConvNormAct``), ``block{k}`` (``InvertedResidual``,
  ``k`` from 0), ``last_conv``, ``global_pool``, ``dropout``, ``head``;
  ``pre_logits`` is the pooled 1280-unit feature.

  Attributes:
    num_classes: output logits.
    stages: rows ``(expansion t, channels c, repeats n, first stride s)``
      (``MOBILENET_V2_CONFIG``, torchvision's ``inverted_residual_setting``).
    width_multiplier: scales every layer's channels (rounded to multiples
      of 8); the last layer is never narrower than 1280.
    dropout_rate: dropout before the head (0.2, as torchvision).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  stages: Sequence[Sequence[int]] = MOBILENET_V2_CONFIG
  width_multiplier: float = 1.0
  dropout_rate: float = 0.2

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    if self.width_multiplier <= 0:
      raise ValueError(f"width_multiplier must be positive, got {self.width_multiplier}")
    self.check_input(x)
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_out)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    down = downsample_def(self.downsample)
    x = ConvNormAct(make_divisible(32 * self.width_multiplier), 3, conv=conv, norm=norm,
                    act=nn.relu6, strides=2, downsample=down, name="stem")(x, train)
    k = 0
    for t, c, n, s in self.stages:
      for i in range(n):
        x = InvertedResidual(make_divisible(c * self.width_multiplier), t, conv=conv,
                             norm=norm, act=nn.relu6, strides=s if i == 0 else 1,
                             downsample=down, name=f"block{k}")(x, train)
        k += 1
    last = make_divisible(1280 * max(1.0, self.width_multiplier))
    x = ConvNormAct(last, 1, conv=conv, norm=norm, act=nn.relu6, name="last_conv")(x, train)
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    return classifier_head(self, x)
