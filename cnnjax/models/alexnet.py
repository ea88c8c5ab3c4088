"""AlexNet in torchvision's layout (61,100,840 parameters at 1000 classes).

Krizhevsky et al., "ImageNet Classification with Deep Convolutional Neural
Networks" (NeurIPS 2012), as torchvision implements it (the single-GPU
variant of "One weird trick", Krizhevsky 2014): 64-192-384-256-256
channels, no local response normalisation, an adaptive average pool to 6x6.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.layers import initializers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.pooling import AdaptiveAvgPool
from cnnjax.models.base import ImageClassifier, classifier_head, conv_def, max_pool
from cnnjax.models.registry import register

Array = jax.Array
Dtype = Any

# (features, kernel, stride, padding, max-pool after)
_FEATURES = ((64, 11, 4, 2, True), (192, 5, 1, 2, True), (384, 3, 1, 1, False),
             (256, 3, 1, 1, False), (256, 3, 1, 1, True))


@register("alexnet", input_shape=(64, 64, 3))
class AlexNet(ImageClassifier):
  """AlexNet: five convolutions with ReLU and three max-pools, adaptive pool to 6x6, three dense.

  ``(N, H, W, C) -> (N, num_classes)``, ``H, W >= 63``. The flattened
  6x6x256 features are in NHWC order (PyTorch flattens CHW: permute the first
  dense kernel when importing weights).

  Submodules: ``conv1`` ... ``conv5`` (``ConvNormAct`` without norm),
  ``pool1``, ``pool2``, ``pool5``, ``avgpool``, ``fc6``, ``fc7``, ``head``;
  ``pre_logits`` is the 4096-unit ``fc7`` feature.

  Attributes:
    num_classes: output logits.
    dropout_rate: dropout before ``fc6`` and ``fc7`` (training only).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    input_channels: expected channels, or None to accept any.
    dtype, param_dtype: computation and parameter dtypes.
  """

  dropout_rate: float = 0.5

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    self.check_input(x, 63)
    down = downsample_def(self.downsample)
    for i, (features, k, s, p, pool) in enumerate(_FEATURES, start=1):
      x = ConvNormAct(features, k, conv=conv_def(self), strides=s, downsample=down,
                      padding=((p, p), (p, p)), name=f"conv{i}")(x, train)
      if pool:
        x = max_pool(x, 3, 2, "VALID", down, f"pool{i}")
    x = AdaptiveAvgPool((6, 6), name="avgpool")(x)
    x = x.reshape(x.shape[0], -1)
    for name in ("fc6", "fc7"):
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
      x = nn.relu(nn.Dense(4096, dtype=self.dtype, param_dtype=self.param_dtype,
                           kernel_init=initializers.lecun_normal(), name=name)(x))
    return classifier_head(self, x)
