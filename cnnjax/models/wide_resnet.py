"""Wide ResNets for CIFAR, WRN-d-k (WRN-28-10: 36,479,194 parameters at 10 classes).

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016): a 3x3
convolution to 16 channels, three stages of ``(d - 4) / 6`` pre-activation
``WideBasicBlock`` with ``16 k``, ``32 k``, ``64 k`` channels (strides 1, 2,
2), BatchNorm-ReLU, global pooling, a dense head; optional dropout between
each block's convolutions. 32x32 inputs, total stride 4.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax

from cnnjax import layers
from cnnjax.blocks.common import conv_padding, downsample_def
from cnnjax.blocks.wide import WideBasicBlock
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    check_image_input,
    classifier_head,
    conv_def,
    field,
    he_fan_out,
)
from cnnjax.models.registry import register
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class WideResNet(ImageClassifier):
  """WRN-d-k: 3x3 stem, three stages of pre-activation wide blocks, BN-ReLU, pool, head.

  ``(N, H, W, C) -> (N, num_classes)``.

  Submodules: ``stem`` (a convolution), ``stage{i}_block{j}``
  (``WideBasicBlock``, ``i`` from 1, ``j`` from 0), ``final_norm``,
  ``global_pool``, ``head``; ``pre_logits`` is the pooled ``64 k``-channel
  feature.

  Attributes:
    depth: ``6 n + 4`` convolutional layers (28).
    widen_factor: ``k`` (10).
    num_classes: output logits (10).
    dropout_rate: dropout between each block's convolutions in training
      (0.3 in the paper's best CIFAR runs; 0 here unless set).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    padding: ``None`` for symmetric zero padding, or a mode for all convolutions.
    act: nonlinearity.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  depth: int = 28
  widen_factor: int = 10
  num_classes: int = field(10)
  dropout_rate: float = 0.0
  padding: PaddingLike | None = None
  act: Callable[[Array], Array] = nn.relu

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6 n + 4 with n >= 1 (10, 16, 22, 28, 40, ...), "
                       f"got {self.depth}")
    if self.widen_factor < 1:
      raise ValueError(f"widen_factor must be >= 1, got {self.widen_factor}")
    check_image_input(x, "WideResNet", self.input_channels)
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_out)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    down = downsample_def(self.downsample)
    x = conv(16, (3, 3), padding=conv_padding(self.padding, (3, 3)), name="stem")(x)
    n = (self.depth - 4) // 6
    for i in range(3):
      for j in range(n):
        x = WideBasicBlock(16 * self.widen_factor * 2**i, conv=conv, norm=norm, act=self.act,
                           strides=2 if i > 0 and j == 0 else 1,
                           dropout_rate=self.dropout_rate, downsample=down,
                           padding=self.padding, name=f"stage{i + 1}_block{j}")(x, train)
    x = self.act(norm(name="final_norm")(x, train=train))
    x = layers.GlobalAvgPool(name="global_pool")(x)
    return classifier_head(self, x)


WRN28_10 = register("wrn28_10", input_shape=(32, 32, 3))(WideResNet)
