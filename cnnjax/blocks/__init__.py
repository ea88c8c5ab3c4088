"""Blocks built from ``cnnjax.layers``: residual, inception, separable, ConvNeXt, MBConv, dense.

Every block takes its parts as factories (``conv``, ``norm``, ``act``,
``downsample``; see ``cnnjax.blocks.common``) and is called as
``block(x, train)`` on ``(N, H, W, C)`` inputs.
"""

from cnnjax.blocks.common import (
    DOWNSAMPLE_MODES,
    ConvNormAct,
    ModuleDef,
    apply_norm,
    downsample_def,
    symmetric_padding,
)
from cnnjax.blocks.convnext import ConvNeXtBlock
from cnnjax.blocks.densenet import DenseBlock, DenseLayer, Transition
from cnnjax.blocks.efficientnet import MBConv
from cnnjax.blocks.inception import InceptionBlock, inception_config
from cnnjax.blocks.pooling import AdaptiveAvgPool, adaptive_avg_pool
from cnnjax.blocks.resnet import BasicBlock, Bottleneck
from cnnjax.blocks.resnext import GroupedBottleneck
from cnnjax.blocks.separable import InvertedResidual, SeparableBlock
from cnnjax.blocks.wide import WideBasicBlock

__all__ = [
    "DOWNSAMPLE_MODES",
    "AdaptiveAvgPool",
    "BasicBlock",
    "Bottleneck",
    "ConvNeXtBlock",
    "ConvNormAct",
    "DenseBlock",
    "DenseLayer",
    "GroupedBottleneck",
    "InceptionBlock",
    "InvertedResidual",
    "MBConv",
    "ModuleDef",
    "SeparableBlock",
    "Transition",
    "WideBasicBlock",
    "adaptive_avg_pool",
    "apply_norm",
    "downsample_def",
    "inception_config",
    "symmetric_padding",
]
