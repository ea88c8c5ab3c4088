"""The pre-activation wide basic block of Wide ResNets on CIFAR (WRN-d-k).

Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016), block
B(3, 3) with dropout between the two convolutions, in the pre-activation
order of He et al., "Identity Mappings in Deep Residual Networks" (ECCV
2016): BN-ReLU-conv, BN-ReLU-dropout-conv. As the authors' code, a block
that changes the shape takes its 1x1 shortcut from the pre-activated input.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax.blocks import common
from cnnjax.blocks.common import Activation, ModuleDef
from cnnjax.blocks.resnet import _downsample
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class WideBasicBlock(nn.Module):
  """``conv2(dropout(act(norm2(conv1_s(act(norm1(x))))))) + shortcut``.

  ``(N, H, W, C) -> (N, H / s, W / s, features)``. The shortcut is ``x``
  when the shape is kept, else a strided 1x1 convolution of
  ``act(norm1(x))`` (no norm after it: the next block normalises the sum).
  With a ``downsample`` factory ``conv1`` runs at stride 1 and
  ``downsample`` follows ``act(norm2(.))``; the shortcut is downsampled
  before its 1x1 convolution, keeping the same polyphase component (APS).

  Submodules: ``norm1``, ``conv1``, ``norm2``, ``downsample``, ``dropout``,
  ``conv2``, ``shortcut_downsample``, ``shortcut_conv`` (those that apply).

  Attributes:
    features: output channels (``16 k``, ``32 k``, ``64 k`` in WRN-d-k).
    conv: convolution factory; norm: norm factory; act: nonlinearity.
    strides: stride of ``conv1`` (1 or 2).
    dropout_rate: dropout between the convolutions in training (0.3 in the
      paper's best CIFAR runs), from the ``'dropout'`` rng stream.
    downsample: antialiased downsampling factory, or None for strided convs.
    padding: ``None`` for symmetric ``k // 2`` padding, or a padding mode.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  strides: int | Sequence[int] = 1
  dropout_rate: float = 0.0
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    strides = common.pair(self.strides)
    strided = any(s > 1 for s in strides)
    antialias = self.downsample is not None and strided
    k = (3, 3)
    pre = self.act(common.apply_norm(common.make_norm(self.norm, "norm1"), x, train))
    y = self.conv(self.features, k, strides=(1, 1) if antialias else strides,
                  padding=common.conv_padding(self.padding, k), name="conv1")(pre)
    y = self.act(common.apply_norm(common.make_norm(self.norm, "norm2"), y, train))
    index = None
    if antialias:
      y, index = _downsample(self, y, strides)
    if self.dropout_rate > 0:
      y = nn.Dropout(self.dropout_rate, deterministic=not train, name="dropout")(y)
    y = self.conv(self.features, k, padding=common.conv_padding(self.padding, k), name="conv2")(y)
    if x.shape[-1] == self.features and not strided:
      return x + y.astype(x.dtype)
    shortcut, short_strides = pre, strides
    if antialias:
      module = self.downsample(strides=strides, name="shortcut_downsample")
      shortcut = module(shortcut) if index is None else module(shortcut, index)
      short_strides = (1, 1)
    shortcut = self.conv(self.features, (1, 1), strides=short_strides, padding=((0, 0), (0, 0)),
                         name="shortcut_conv")(shortcut)
    return shortcut + y
