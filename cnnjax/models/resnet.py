"""ResNet v1.5 (ResNet-18/34/50) with an ImageNet or a CIFAR stem.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), as
torchvision builds it: convolutions without bias, symmetric ``k // 2``
padding (so stride-2 layers match PyTorch exactly, not ``'SAME'``), the
stride of a bottleneck on its 3x3. Parameters at 1000 classes: ResNet-18
11,689,512; ResNet-34 21,797,672; ResNet-50 25,557,032.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import ConvNormAct, ModuleDef, downsample_def
from cnnjax.blocks.resnet import BasicBlock, Bottleneck
from cnnjax.models.base import (
    ImageClassifier,
    batch_norm_def,
    classifier_head,
    conv_def,
    he_fan_out,
    max_pool,
)
from cnnjax.models.registry import register
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any

STEMS = ("imagenet", "cifar")


class ResNet(ImageClassifier):
  """ResNet: stem, four stages of residual blocks, global average pool, dense head.

  ``(N, H, W, C) -> (N, num_classes)``. The ``'imagenet'`` stem is a 7x7
  stride-2 convolution and a 3x3 stride-2 max-pool (total stride 32); the
  ``'cifar'`` stem a 3x3 stride-1 convolution and no pool (total stride 8,
  for 32x32 images).

  Submodules: ``stem`` (``ConvNormAct``), ``stem_pool``,
  ``stage{i}_block{j}`` (``i`` from 1), ``global_pool``, ``head``;
  ``pre_logits`` is the pooled feature (512 or 2048 channels).

  Attributes:
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block_cls: ``BasicBlock`` or ``Bottleneck`` (or a partial of them).
    num_classes: output logits.
    num_filters: channels of the stem and of the first stage (doubling each stage).
    stem: ``'imagenet'`` or ``'cifar'``.
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``: every strided
      convolution and pool becomes stride 1 followed by a ``BlurPool`` or a
      ``PolyphaseDownsample`` after the nonlinearity (the stem too).
    padding: ``None`` for PyTorch's symmetric zero padding, or a mode for all
      convolutions (``'CIRCULAR'`` for exact circular shift equivariance).
    zero_init_last_norm: zero-initialise the last norm of every block.
    act: nonlinearity.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_filters: int = 64
  stem: str = "imagenet"
  padding: PaddingLike | None = None
  zero_init_last_norm: bool = False
  act: Callable[[Array], Array] = nn.relu

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    if self.stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
    self.check_input(x)
    conv = conv_def(self, use_bias=False, kernel_init=he_fan_out)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-5)
    down = downsample_def(self.downsample)
    if self.stem == "imagenet":
      x = ConvNormAct(self.num_filters, 7, conv=conv, norm=norm, act=self.act, strides=2,
                      downsample=down, padding=self.padding, name="stem")(x, train)
      pool_padding = ((1, 1), (1, 1)) if self.padding is None else self.padding
      x = max_pool(x, 3, 2, pool_padding, down, "stem_pool")
    else:
      x = ConvNormAct(self.num_filters, 3, conv=conv, norm=norm, act=self.act,
                      padding=self.padding, name="stem")(x, train)
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        x = self.block_cls(
            self.num_filters * 2**i, conv=conv, norm=norm, act=self.act,
            strides=2 if i > 0 and j == 0 else 1, downsample=down, padding=self.padding,
            zero_init_last_norm=self.zero_init_last_norm,
            name=f"stage{i + 1}_block{j}")(x, train)
    x = layers.GlobalAvgPool(name="global_pool")(x)
    return classifier_head(self, x)


_IMAGENET = {"input_shape": (32, 32, 3)}
ResNet18 = register("resnet18", **_IMAGENET)(
    functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock))
ResNet34 = register("resnet34", **_IMAGENET)(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock))
ResNet50 = register("resnet50", **_IMAGENET)(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck))
ResNet18Cifar = register("resnet18_cifar")(
    functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock, stem="cifar",
                      num_classes=10))
ResNet34Cifar = register("resnet34_cifar")(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock, stem="cifar",
                      num_classes=10))
ResNet50Cifar = register("resnet50_cifar")(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck, stem="cifar",
                      num_classes=10))
