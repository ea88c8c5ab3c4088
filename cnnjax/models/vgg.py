"""VGG-11 and VGG-16, with and without batch norm, in torchvision's layout.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (ICLR 2015), configurations A (11 layers) and D (16).
Parameters at 1000 classes: VGG-11 132,863,336; VGG-16 138,357,544; with
batch norm (convolutions keep their bias, as in torchvision) 132,868,840
and 138,365,992.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.layers import initializers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.pooling import AdaptiveAvgPool
from cnnjax.models.base import ImageClassifier, batch_norm_def, classifier_head, conv_def, max_pool
from cnnjax.models.registry import register

Array = jax.Array
Dtype = Any

#: Channels of the 3x3 convolutions per stage; each stage ends in a 2x2 max-pool.
VGG_CONFIGS = {
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
}


class VGG(ImageClassifier):
  """VGG: stages of 3x3 convolutions and 2x2 max-pools, adaptive pool to 7x7, three dense.

  ``(N, H, W, C) -> (N, num_classes)`` with ``H, W >= 32``. Flattened 7x7x512
  features are in NHWC order (PyTorch flattens CHW: permute the first dense
  kernel when importing weights).

  Submodules: ``stage{i}_conv{j}`` (``ConvNormAct``), ``stage{i}_pool``,
  ``avgpool``, ``fc6``, ``fc7``, ``head``; ``pre_logits`` is the 4096-unit
  ``fc7`` feature.

  Attributes:
    stages: channels of each stage's convolutions (``VGG_CONFIGS``).
    batch_norm: a BatchNorm after every convolution.
    num_classes: output logits.
    dropout_rate: dropout after ``fc6`` and ``fc7`` (training only).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'`` for the pools.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  stages: Sequence[Sequence[int]]
  batch_norm: bool = False
  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    self.check_input(x, 32)
    norm = batch_norm_def(self, momentum=0.9) if self.batch_norm else None
    down = downsample_def(self.downsample)
    for i, stage in enumerate(self.stages, start=1):
      for j, features in enumerate(stage):
        x = ConvNormAct(features, 3, conv=conv_def(self), norm=norm,
                        name=f"stage{i}_conv{j}")(x, train)
      x = max_pool(x, 2, 2, "VALID", down, f"stage{i}_pool")
    x = AdaptiveAvgPool((7, 7), name="avgpool")(x)
    x = x.reshape(x.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = nn.relu(nn.Dense(4096, dtype=self.dtype, param_dtype=self.param_dtype,
                           kernel_init=initializers.lecun_normal(), name=name)(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return classifier_head(self, x)


VGG11 = register("vgg11")(functools.partial(VGG, stages=VGG_CONFIGS["A"]))
VGG16 = register("vgg16")(functools.partial(VGG, stages=VGG_CONFIGS["D"]))
VGG11BN = register("vgg11_bn")(functools.partial(VGG, stages=VGG_CONFIGS["A"], batch_norm=True))
VGG16BN = register("vgg16_bn")(functools.partial(VGG, stages=VGG_CONFIGS["D"], batch_norm=True))
