"""Flax linen layers over ``cnnjax.ops``, channels last.

Fields and variable names follow ``flax.linen`` (``features``, ``kernel_size``,
``strides``, ``padding``, ...; ``kernel``/``bias``, ``scale``/``bias``,
``mean``/``var``), so code and parameters move between the two. Modules whose
behaviour differs between training and evaluation take ``train: bool`` in
``__call__``.
"""

from cnnjax.layers.antialias import BlurPool, MaxBlurPool, PolyphaseDownsample
from cnnjax.layers.conv import Conv, DepthwiseConv, SeparableConv
from cnnjax.layers.conv_transpose import (
    ConvTranspose,
    kernel_from_torch_conv_transpose,
    torch_conv_transpose_padding,
)
from cnnjax.layers.deformable import DeformableConv, DeformableConv2D, bilinear_sample
from cnnjax.layers.normalization import BatchNorm
from cnnjax.layers.pooling import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from cnnjax.layers.upsample import PolyphaseUpsample
from cnnjax.layers.regularization import DropPath, LayerScale, SqueezeExcite  # noqa: F401
from cnnjax.layers import initializers  # noqa: F401  (after the layers: conv.py imports it)

__all__ = [
    "initializers",
    "BlurPool",
    "MaxBlurPool",
    "PolyphaseDownsample",
    "PolyphaseUpsample",
    "AvgPool",
    "BatchNorm",
    "Conv",
    "ConvTranspose",
    "DeformableConv",
    "DeformableConv2D",
    "DepthwiseConv",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "MaxPool",
    "SeparableConv",
    "bilinear_sample",
    "kernel_from_torch_conv_transpose",
    "torch_conv_transpose_padding",
]
