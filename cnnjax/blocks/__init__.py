"""Blocks built from ``cnnjax.layers``: residual, inception and separable.

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
from cnnjax.blocks.inception import InceptionBlock, inception_config
from cnnjax.blocks.pooling import AdaptiveAvgPool, adaptive_avg_pool
from cnnjax.blocks.resnet import BasicBlock, Bottleneck
from cnnjax.blocks.separable import InvertedResidual, SeparableBlock

__all__ = [
    "DOWNSAMPLE_MODES",
    "AdaptiveAvgPool",
    "BasicBlock",
    "Bottleneck",
    "ConvNormAct",
    "InceptionBlock",
    "InvertedResidual",
    "ModuleDef",
    "SeparableBlock",
    "adaptive_avg_pool",
    "apply_norm",
    "downsample_def",
    "inception_config",
    "symmetric_padding",
]
