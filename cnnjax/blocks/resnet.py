"""Residual blocks of ResNet v1.5: ``BasicBlock`` and ``Bottleneck``.

He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016), with
the stride on the 3x3 convolution of the bottleneck (v1.5, as torchvision and
the Flax ImageNet example). Both take their parts as factories (see
``cnnjax.blocks.common``) and are called as ``block(x, train)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from cnnjax.blocks import common
from cnnjax.blocks.common import Activation, ModuleDef
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


def _downsample(block: nn.Module, y: Array, strides: tuple[int, ...]) -> tuple[Array, Array | None]:
  """The main path's antialiased downsampling; also the phase it kept, for APS.

  A ``PolyphaseDownsample`` chooses a polyphase component per example; the
  shortcut must keep the same one, or the residual sum stops being a shifted
  copy of the unshifted sum and the block loses its shift invariance.
  """
  module = block.downsample(strides=strides, name="downsample")
  if hasattr(module, "with_index"):
    return module.with_index(y)
  return module(y), None


def _shortcut(block: nn.Module, x: Array, features: int, strides: tuple[int, ...],
              train: bool, index: Array | None = None) -> Array:
  """Identity, or (downsample →) 1x1 conv → norm when the shape changes.

  Submodules ``shortcut_downsample``, ``shortcut_conv``, ``shortcut_norm``.
  ``index`` is the polyphase component the main path kept (APS), reused here.
  """
  if x.shape[-1] == features and all(s == 1 for s in strides):
    return x
  if block.downsample is not None and any(s > 1 for s in strides):
    module = block.downsample(strides=strides, name="shortcut_downsample")
    x = module(x) if index is None else module(x, index)
    strides = (1, 1)
  x = block.conv(features, (1, 1), strides=strides, padding=((0, 0), (0, 0)),
                 name="shortcut_conv")(x)
  return common.apply_norm(common.make_norm(block.norm, "shortcut_norm"), x, train)


class ResidualBlock(nn.Module):
  """The fields every residual block has (``BasicBlock``, ``Bottleneck``, ``GroupedBottleneck``).

  Attributes:
    features: output channels of the main path (times ``expansion``).
    conv, norm, act: the convolution, normalisation and activation factories.
    strides: stride of the block (1 or 2), int or pair.
    downsample: how a strided block reduces resolution (``None``: strided convs).
    padding: the convolutions' padding (``None``: symmetric).
    zero_init_last_norm: initialise the last norm's scale to zero.
  """

  features: int
  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = nn.relu
  strides: int | Sequence[int] = 1
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None
  zero_init_last_norm: bool = False


class BasicBlock(ResidualBlock):
  """Two 3x3 convolutions with a residual connection (ResNet-18/34).

  ``(N, H, W, C) -> (N, H / s, W / s, features)``::

    y = act(norm2(conv2(act(norm1(conv1_s(x))))) + shortcut(x))

  where ``shortcut`` is the identity, or a strided 1x1 convolution and a norm
  when the channels or the resolution change. With a ``downsample`` factory,
  ``conv1`` runs at stride 1 and ``downsample`` follows its nonlinearity
  (and precedes the shortcut's 1x1 convolution).

  Submodules: ``conv1``, ``norm1``, ``downsample``, ``conv2``, ``norm2``,
  ``shortcut_conv``, ``shortcut_norm``, ``shortcut_downsample`` (those that
  apply).

  Attributes:
    features: output channels.
    conv: convolution factory, e.g. ``partial(layers.Conv, use_bias=False)``.
    norm: norm factory (``partial(layers.BatchNorm, momentum=0.9)``) or None.
    act: nonlinearity.
    strides: stride of the block (1 or 2), int or pair.
    downsample: antialiased downsampling factory, or None for strided convs.
    padding: ``None`` for PyTorch's symmetric ``k // 2`` padding, or a
      padding for every 3x3 convolution (e.g. ``'CIRCULAR'``).
    zero_init_last_norm: initialise ``norm2``'s scale to zero, so that the
      block starts as the identity (Goyal et al., 2017).
  """


  expansion = 1

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    strides = common.pair(self.strides)
    antialias = self.downsample is not None and any(s > 1 for s in strides)
    k = (3, 3)
    y = self.conv(self.features, k, strides=(1, 1) if antialias else strides,
                  padding=common.conv_padding(self.padding, k), name="conv1")(x)
    y = self.act(common.apply_norm(common.make_norm(self.norm, "norm1"), y, train))
    index = None
    if antialias:
      y, index = _downsample(self, y, strides)
    y = self.conv(self.features, k, padding=common.conv_padding(self.padding, k), name="conv2")(y)
    y = common.apply_norm(common.make_norm(self.norm, "norm2", self.zero_init_last_norm), y, train)
    return self.act(y + _shortcut(self, x, self.features, strides, train, index))


class Bottleneck(ResidualBlock):
  """1x1 reduce, 3x3, 1x1 expand, with a residual connection (ResNet-50/101/152).

  ``(N, H, W, C) -> (N, H / s, W / s, features * expansion)``. ResNet v1.5:
  the stride is on the 3x3 convolution. With a ``downsample`` factory the 3x3
  runs at stride 1 and ``downsample`` follows its nonlinearity, before
  ``conv3``.

  Submodules: ``conv1``, ``norm1``, ``conv2``, ``norm2``, ``downsample``,
  ``conv3``, ``norm3`` and the ``shortcut_*`` ones of ``BasicBlock``.

  Attributes:
    features: channels of the 3x3 convolution; the output has
      ``features * expansion``.
    conv, norm, act, strides, downsample, padding: as ``BasicBlock``.
    expansion: output channels per ``features`` (4 in ResNet-50).
    zero_init_last_norm: initialise ``norm3``'s scale to zero.
  """

  expansion: int = 4

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    common.check_image(x, type(self).__name__)
    return bottleneck(self, x, train, self.features, self.features * self.expansion)


def bottleneck(block: ResidualBlock, x: Array, train: bool, width: int, out: int,
               **conv2: Any) -> Array:
  """A bottleneck's computation in ``block``'s scope: ``(N, H, W, C) -> (N, H', W', out)``.

  1x1 to ``width``, 3x3 (with ``conv2``'s keywords, e.g. ``feature_group_count``)
  carrying the stride (or, with ``downsample``, followed by it), 1x1 to ``out``,
  each normalised (``norm3`` zero-initialised on request), plus the shortcut.
  The names (``conv1``..``conv3``, ``norm1``..``norm3``, ``shortcut_*``) are
  those of every bottleneck, so weights load alike.
  """
  strides = common.pair(block.strides)
  antialias = block.downsample is not None and any(s > 1 for s in strides)
  none = ((0, 0), (0, 0))
  y = block.conv(width, (1, 1), padding=none, name="conv1")(x)
  y = block.act(common.apply_norm(common.make_norm(block.norm, "norm1"), y, train))
  y = block.conv(width, (3, 3), strides=(1, 1) if antialias else strides,
                 padding=common.conv_padding(block.padding, (3, 3)), name="conv2", **conv2)(y)
  y = block.act(common.apply_norm(common.make_norm(block.norm, "norm2"), y, train))
  index = None
  if antialias:
    y, index = _downsample(block, y, strides)
  y = block.conv(out, (1, 1), padding=none, name="conv3")(y)
  y = common.apply_norm(common.make_norm(block.norm, "norm3", block.zero_init_last_norm), y, train)
  return block.act(y + _shortcut(block, x, out, strides, train, index))
