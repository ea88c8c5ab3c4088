"""LeNet-5 (conv 6@5x5, pool, conv 16@5x5, pool, dense 120-84-10), and a small CNN for 8x8 digits.

LeCun et al., "Gradient-Based Learning Applied to Document Recognition"
(Proc. IEEE 1998), in its modern form: ReLU and max-pooling instead of
sigmoids and trainable subsampling.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.layers import initializers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.models.base import ImageClassifier, batch_norm_def, classifier_head, conv_def, field, max_pool
from cnnjax.models.registry import register
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any


@register("lenet5", input_shape=(32, 32, 3))
class LeNet5(ImageClassifier):
  """LeNet-5: conv 5x5x6 → ReLU → max-pool 2 → conv 5x5x16 → ReLU → max-pool 2 → 120 → 84 → classes.

  On 32x32 inputs with ``'VALID'`` padding the second pool leaves
  ``5 x 5 x 16 = 400`` features, flattened into the 120-unit layer. Small
  inputs (8x8 digits) need ``padding='SAME'``: ``'VALID'`` would shrink an
  8x8 image below the second 5x5 kernel.

  Submodules: ``conv1``, ``pool1``, ``conv2``, ``pool2``, ``fc1``, ``fc2``,
  ``head``; ``pre_logits`` is the 84-unit feature.

  Attributes:
    num_classes: output logits.
    padding: padding of both convolutions, ``'VALID'`` (the original) or
      ``'SAME'`` (or any ``ops.conv`` mode).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'`` for the two pools.
    input_channels: expected channels, or None to accept any.
    dtype: computation dtype; logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int = field(10)
  padding: PaddingLike = "VALID"

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits (``train`` has no effect)."""
    del train  # No dropout or norm: the same function in both modes.
    self.check_input(x)
    conv = conv_def(self, padding=self.padding)
    down = downsample_def(self.downsample)
    x = nn.relu(conv(6, (5, 5), name="conv1")(x))
    x = max_pool(x, 2, 2, "VALID", down, "pool1")
    x = nn.relu(conv(16, (5, 5), name="conv2")(x))
    x = max_pool(x, 2, 2, "VALID", down, "pool2")
    x = x.reshape(x.shape[0], -1)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                              kernel_init=initializers.lecun_normal())
    x = nn.relu(dense(120, name="fc1")(x))
    x = nn.relu(dense(84, name="fc2")(x))
    return classifier_head(self, x)


@register("digits_cnn", input_shape=(8, 8, 1))
class DigitsCNN(ImageClassifier):
  """A small CNN for 8x8 images (scikit-learn's digits), about 95k parameters.

  conv 3x3x32 → BN → ReLU → conv 3x3x64 → BN → ReLU → max-pool 2 → conv
  3x3x128 → BN → ReLU → global average pool → dropout → dense. ``'SAME'``
  padding keeps the 8x8 resolution until the pool.

  Submodules: ``conv1``, ``conv2``, ``pool``, ``conv3`` (``ConvNormAct``),
  ``dropout``, ``head``; ``pre_logits`` is the 128-unit pooled feature.

  Attributes:
    num_classes: output logits.
    width: channels of the first convolution (then 2x and 4x).
    dropout_rate: dropout before the head (training only).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'`` for the pool.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  num_classes: int = field(10)
  width: int = 32
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    self.check_input(x)
    block = lambda n, name: ConvNormAct(  # noqa: E731
        n, (3, 3), conv=conv_def(self, use_bias=False), norm=batch_norm_def(self, momentum=0.9),
        act=nn.relu, padding="SAME", name=name)
    x = block(self.width, "conv1")(x, train)
    x = block(2 * self.width, "conv2")(x, train)
    x = max_pool(x, 2, 2, "SAME", downsample_def(self.downsample), "pool")
    x = block(4 * self.width, "conv3")(x, train)
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    return classifier_head(self, x)
