"""cnnjax for Flax NNX: the same layers, blocks and models as NNX modules, and weights both ways.

* ``cnnjax.nnx.Conv``, ``BatchNorm``, ``MaxPool``, ... (``cnnjax.nnx.layers``):
  constructors in ``flax.nnx``'s style (``in_features``, ``rngs``).
* ``cnnjax.nnx.models.create(name, *, rngs, **fields)``: every zoo model.
* ``FromLinen(block, sample, rngs=...)``: any cnnjax block (or linen module
  of cnnjax layers) as an NNX module.
* ``from_linen(model, variables)`` / ``to_linen(model)``: linen variables
  (``init``, checkpoints, ``models.load_torch_state_dict``) in and out.

Every computation is the linen module's, over ``cnnjax.ops``; the NNX side
holds the state (``nnx.Param``, ``nnx.BatchStat``) and the mode
(``use_running_average``, ``model.train()``/``model.eval()``).
"""

from cnnjax.nnx import models
from cnnjax.nnx.layers import (
    AvgPool,
    BatchNorm,
    BlurPool,
    Conv,
    ConvTranspose,
    DeformableConv2D,
    DepthwiseConv,
    GlobalAvgPool,
    GlobalMaxPool,
    MaxBlurPool,
    MaxPool,
    PolyphaseDownsample,
    SeparableConv,
)
from cnnjax.nnx.module import FromLinen, Scope, from_linen, to_linen

__all__ = [
    "AvgPool", "BatchNorm", "BlurPool", "Conv", "ConvTranspose", "DeformableConv2D",
    "DepthwiseConv", "FromLinen", "GlobalAvgPool", "GlobalMaxPool", "MaxBlurPool", "MaxPool",
    "PolyphaseDownsample", "Scope", "SeparableConv", "from_linen", "models", "to_linen",
]
