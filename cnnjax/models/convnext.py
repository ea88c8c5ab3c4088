"""ConvNeXt in torchvision's layout (ConvNeXt-T: 28,589,128 parameters at 1000 classes).

Liu et al., "A ConvNet for the 2020s" (CVPR 2022): a 4x4 stride-4
"patchify" stem, four stages of ``ConvNeXtBlock`` separated by LayerNorm and
2x2 stride-2 convolutions, channels-last LayerNorm (epsilon 1e-6),
stochastic depth rising linearly from 0 to ``drop_path_rate`` over the
blocks, layer scale 1e-6, weights from a normal of std 0.02 truncated at
two standard deviations.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax import layers
from cnnjax.layers import initializers
from cnnjax.blocks.common import ConvNormAct, downsample_def
from cnnjax.blocks.convnext import ConvNeXtBlock
from cnnjax.models.base import ImageClassifier, check_image_input, classifier_head, conv_def
from cnnjax.models.registry import register

Array = jax.Array

#: Weights from a normal of std 0.02 truncated at two std (torchvision's bound is +-2 absolute).
trunc_normal_002 = initializers.truncated_normal(0.02)


class ConvNeXt(ImageClassifier):
  """ConvNeXt: patchify stem, four stages of ``ConvNeXtBlock``, global pool, LayerNorm, head.

  ``(N, H, W, C) -> (N, num_classes)``, total stride 32.

  Submodules: ``stem`` (``ConvNormAct``: ``conv``, ``norm``),
  ``stage{i}_reduce_norm`` and ``stage{i}_reduce_conv`` (before stages 2-4),
  ``stage{i}_block{j}`` (``i`` from 1, ``j`` from 0), ``global_pool``,
  ``head_norm``, ``head``; ``pre_logits`` is the normalised pooled feature.

  Attributes:
    depths: blocks per stage ((3, 3, 9, 3) for ConvNeXt-T).
    dims: channels per stage ((96, 192, 384, 768)).
    num_classes: output logits.
    drop_path_rate: stochastic depth of the last block (0.1 for ConvNeXt-T),
      from the ``'dropout'`` rng stream.
    layer_scale_init: initial layer scale (1e-6), or None.
    kernel_size: depthwise kernel of every block (7, as in the paper and
      torchvision; timm calls it ``kernel_sizes``). Another size changes the
      depthwise kernels' shapes, so torchvision weights load only at 7.
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``: the stem and the
      reductions become stride-1 ``'SAME'`` convolutions followed by a
      ``BlurPool`` or a ``PolyphaseDownsample``.
    input_channels: expected channels, or None to accept any.
    axis_name: unused (LayerNorm has no statistics across the batch).
    dtype, param_dtype: computation and parameter dtypes (the LayerNorms
      compute their statistics in float32).
  """

  depths: Sequence[int] = (3, 3, 9, 3)
  dims: Sequence[int] = (96, 192, 384, 768)
  drop_path_rate: float = 0.1
  layer_scale_init: float | None = 1e-6
  kernel_size: int | Sequence[int] = 7

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """``(N, H, W, C) -> (N, num_classes)`` logits."""
    if len(self.depths) != len(self.dims):
      raise ValueError(f"depths and dims must have the same length, got {self.depths} and "
                       f"{self.dims}")
    check_image_input(x, "ConvNeXt", self.input_channels)
    conv = conv_def(self, use_bias=True, kernel_init=trunc_normal_002)
    norm = functools.partial(nn.LayerNorm, epsilon=1e-6, use_fast_variance=False,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    down = downsample_def(self.downsample)
    # Non-overlapping patches: 'VALID'; stride 1 before an antialiased downsampling needs 'SAME'.
    padding = "VALID" if down is None else "SAME"
    x = ConvNormAct(self.dims[0], 4, conv=conv, norm=norm, act=None, strides=4, downsample=down,
                    padding=padding, name="stem")(x, train)
    total = sum(self.depths)
    k = 0
    for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
      if i > 0:
        x = norm(name=f"stage{i + 1}_reduce_norm")(x)
        x = conv(dim, (2, 2), strides=(2, 2) if down is None else (1, 1), padding=padding,
                 name=f"stage{i + 1}_reduce_conv")(x)
        if down is not None:
          x = down(strides=(2, 2), name=f"stage{i + 1}_reduce_downsample")(x)
      for j in range(depth):
        rate = self.drop_path_rate * k / (total - 1.0) if total > 1 else 0.0
        x = ConvNeXtBlock(conv=conv, norm=norm, kernel_size=self.kernel_size,
                          layer_scale_init=self.layer_scale_init,
                          drop_path_rate=rate, param_dtype=self.param_dtype,
                          name=f"stage{i + 1}_block{j}")(x, train)
        k += 1
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = norm(name="head_norm")(x)
    return classifier_head(self, x)


ConvNeXtTiny = register("convnext_tiny", input_shape=(32, 32, 3))(ConvNeXt)
