"""GoogLeNet (Inception v1) built from ``InceptionBlock``.

Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015), table 1, with
batch norm after every convolution (as torchvision's ``GoogLeNet``, without
its auxiliary classifiers and with true 5x5 convolutions where torchvision
has 3x3). ``small_input=True`` replaces the ImageNet stem by one 3x3
convolution for 32x32 images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.inception import InceptionBlock, inception_config
from cnnjax.models.base import ImageClassifier, batch_norm_def, classifier_head, conv_def, max_pool
from cnnjax.models.registry import register

Array = jax.Array
Dtype = Any

#: GoogLeNet's table 1 by stage: each row is one inception block's
#: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); blocks 3a-3b,
#: 4a-4e and 5a-5b, with a 3x3 stride-2 max-pool between stages.
GOOGLENET_CONFIG = (
    ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)),
    ((192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
     (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128)),
    ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)),
)


class GoogLeNet(ImageClassifier):
  """GoogLeNet: stem, stages of inception blocks with max-pools between, global pool, dense head.

  ``(N, H, W, C) -> (N, num_classes)``. The ImageNet stem (7x7/2 conv,
  3x3/2 max-pool, 1x1 conv, 3x3 conv, 3x3/2 max-pool) has total stride 8
  before the blocks; the small-input stem a single 3x3x192 convolution.

  Submodules: ``stem_conv1``, ``stem_pool1``, ``stem_conv2``,
  ``stem_conv3``, ``stem_pool2`` (or ``stem`` alone for small inputs),
  ``inception3a`` ... ``inception5b`` (stage ``3 + i``, block letter
  ``a, b, ...``), ``pool3``, ``pool4`` (after every stage but the last),
  ``global_pool``, ``dropout``, ``head``; ``pre_logits`` is the pooled
  feature (1024 units in the paper's configuration).

  Attributes:
    num_classes: output logits.
    stages: the inception blocks' rows, stage by stage
      (``GOOGLENET_CONFIG``); fewer or narrower rows give a smaller network
      of the same structure.
    small_input: use the 3x3 stem for 32x32 images.
    dropout_rate: dropout before the head (0.4 in the paper).
    factorize_5x5: two 3x3 instead of each 5x5 (Inception-v3).
    asymmetric: 1 x n then n x 1 instead of each n x n (Inception-v3).
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    input_channels: expected channels, or None to accept any.
    axis_name: device axis BatchNorm averages its statistics over.
    dtype, param_dtype: computation and parameter dtypes.
  """

  stages: Sequence[Sequence[Sequence[int]]] = GOOGLENET_CONFIG
  small_input: bool = False
  dropout_rate: float = 0.4
  factorize_5x5: bool = False
  asymmetric: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    self.check_input(x)
    conv = conv_def(self, use_bias=False)
    norm = batch_norm_def(self, momentum=0.9, epsilon=1e-3)
    down = downsample_def(self.downsample)
    unit = functools.partial(ConvNormAct, conv=conv, norm=norm, act=nn.relu)
    if self.small_input:
      x = unit(192, 3, name="stem")(x, train)
    else:
      x = unit(64, 7, strides=2, downsample=down, name="stem_conv1")(x, train)
      x = max_pool(x, 3, 2, "SAME", down, "stem_pool1")
      x = unit(64, 1, name="stem_conv2")(x, train)
      x = unit(192, 3, name="stem_conv3")(x, train)
      x = max_pool(x, 3, 2, "SAME", down, "stem_pool2")
    for i, stage in enumerate(self.stages):
      if i:
        x = max_pool(x, 3, 2, "SAME", down, f"pool{i + 2}")
      for j, row in enumerate(stage):
        x = InceptionBlock(**inception_config(row), conv=conv, norm=norm, act=nn.relu,
                           factorize_5x5=self.factorize_5x5, asymmetric=self.asymmetric,
                           name=f"inception{i + 3}{chr(ord('a') + j)}")(x, train)
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(x)
    return classifier_head(self, x)


register("googlenet", input_shape=(32, 32, 3))(GoogLeNet)
GoogLeNetSmall = register("googlenet_small", input_shape=(8, 8, 3))(
    functools.partial(GoogLeNet, small_input=True, num_classes=10))
