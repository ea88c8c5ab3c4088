"""The cnnjax layers as Flax NNX modules: ``nnx.Conv``-style constructors over the linen layers.

Each class builds the ``cnnjax.layers`` module of the same name from the same
fields and wraps it in ``FromLinen``: the computation, the input checks, the
kernel shapes and the initialisers are those of the linen layer (one
definition each), the parameters are ``nnx.Param``s named as the linen ones
(``kernel``, ``bias``; ``depthwise``/``pointwise`` for ``SeparableConv``,
``offset`` for ``DeformableConv2D``), BatchNorm's running statistics are
``nnx.BatchStat``s. As ``flax.nnx.Conv``, layers with parameters take the
input feature count (``in_features``) and ``rngs``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from cnnjax import layers
from cnnjax.nnx.module import FromLinen
from cnnjax.ops.validation import as_tuple

# Spatial size of the abstract input parameters are created from: shapes
# only, nothing is computed, so any size the layer accepts will do.
_SAMPLE_SIZE = 64


def _sample(layer: Any, in_features: int, dtype: Any) -> jax.ShapeDtypeStruct:
  """An abstract ``(1, *spatial, in_features)`` input large enough for ``layer``'s kernel."""
  kernel = layer.kernel_size_tuple()
  rank = len(kernel)
  strides = as_tuple(getattr(layer, "strides", 1), rank, "strides")
  dilation = as_tuple(getattr(layer, "kernel_dilation", 1), rank, "kernel_dilation")
  spatial = tuple(max(_SAMPLE_SIZE, ((k - 1) * d + 1) * s) for k, d, s in zip(kernel, dilation, strides))
  return jax.ShapeDtypeStruct((1, *spatial, in_features), dtype or jnp.float32)


class _Layer(FromLinen):
  """A linen layer with parameters, created for ``in_features`` input channels."""

  linen_class: type = None

  def __init__(self, in_features: int, *args: Any, rngs: nnx.Rngs, **fields: Any):
    if not isinstance(in_features, int) or in_features < 1:
      raise ValueError(f"{type(self).__name__}: in_features must be a positive int, got {in_features!r}")
    layer = self.linen_class(*args, **fields)
    super().__init__(layer, _sample(layer, in_features, fields.get("dtype")), rngs=rngs)


class Conv(_Layer):
  """``layers.Conv`` for NNX: ``Conv(in_features, features, kernel_size, *, rngs, **fields)``.

  Example::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from cnnjax import nnx as cnnx
    >>> conv = cnnx.Conv(3, 6, (3, 3), padding='VALID', rngs=nnx.Rngs(0))
    >>> conv(jnp.ones((4, 28, 28, 3))).shape, conv.kernel.shape
    ((4, 26, 26, 6), (3, 3, 3, 6))
  """

  linen_class = layers.Conv


class ConvTranspose(_Layer):
  """``layers.ConvTranspose`` for NNX: ``ConvTranspose(in_features, features, kernel_size, *, rngs, **fields)``."""

  linen_class = layers.ConvTranspose


class DepthwiseConv(_Layer):
  """``layers.DepthwiseConv`` for NNX: ``DepthwiseConv(in_features, kernel_size, depth_multiplier=1, *, rngs, **fields)``."""

  linen_class = layers.DepthwiseConv


class SeparableConv(_Layer):
  """``layers.SeparableConv`` for NNX: ``SeparableConv(in_features, features, kernel_size, *, rngs, **fields)``."""

  linen_class = layers.SeparableConv


class DeformableConv2D(_Layer):
  """``layers.DeformableConv2D`` for NNX: ``DeformableConv2D(in_features, features, kernel_size, *, rngs, **fields)``."""

  linen_class = layers.DeformableConv2D


class BatchNorm(FromLinen):
  """``layers.BatchNorm`` for NNX, with ``nnx.BatchNorm``'s conventions.

  ``BatchNorm(num_features, *, use_running_average=False, rngs, **fields)``
  with the fields of ``layers.BatchNorm`` (``momentum``, ``epsilon``,
  ``dtype``, ``param_dtype``, ``axis``, ``axis_name``, ...). ``scale`` and
  ``bias`` are ``nnx.Param``s, ``mean`` and ``var`` ``nnx.BatchStat``s kept
  in float32 under bfloat16. The mode is ``use_running_average``, switched
  by ``model.train()``/``model.eval()``, ``nnx.view`` or per call; a call in
  training mode updates ``mean`` and ``var``. Under ``pmap``/``shard_map``
  with ``axis_name`` the statistics are averaged over that axis.
  """

  def __init__(self, num_features: int, *, use_running_average: bool = False,
               rngs: nnx.Rngs, **fields: Any):
    if not isinstance(num_features, int) or num_features < 1:
      raise ValueError(f"BatchNorm: num_features must be a positive int, got {num_features!r}")
    if "use_running_average" in fields or "train" in fields:
      raise TypeError("BatchNorm: the mode is the use_running_average argument")
    layer = layers.BatchNorm(**fields)
    axis = layer.axis
    rank = max(2, axis + 1 if axis >= 0 else -axis)
    shape = [1] * rank
    shape[axis] = num_features
    super().__init__(layer, jax.ShapeDtypeStruct(tuple(shape), fields.get("dtype") or jnp.float32),
                     rngs=rngs, use_running_average=use_running_average)


class _Pool(FromLinen):
  """A parameter-free linen layer built from its fields."""

  linen_class: type = None

  def __init__(self, *args: Any, **fields: Any):
    super().__init__(self.linen_class(*args, **fields))


class MaxPool(_Pool):
  """``layers.MaxPool(window_shape, strides=None, padding='VALID')`` for NNX."""

  linen_class = layers.MaxPool


class AvgPool(_Pool):
  """``layers.AvgPool(window_shape, strides=None, padding='VALID', count_include_pad=False)`` for NNX."""

  linen_class = layers.AvgPool


class GlobalAvgPool(_Pool):
  """``layers.GlobalAvgPool(keepdims=False)`` for NNX: ``(N, *spatial, C)`` to ``(N, C)``."""

  linen_class = layers.GlobalAvgPool


class GlobalMaxPool(_Pool):
  """``layers.GlobalMaxPool(keepdims=False)`` for NNX: ``(N, *spatial, C)`` to ``(N, C)``."""

  linen_class = layers.GlobalMaxPool


class BlurPool(_Pool):
  """``layers.BlurPool(filter_size=3, strides=2, padding='REFLECT')`` for NNX."""

  linen_class = layers.BlurPool


class MaxBlurPool(_Pool):
  """``layers.MaxBlurPool(window_shape=(2, 2), ...)`` for NNX."""

  linen_class = layers.MaxBlurPool


class PolyphaseDownsample(_Pool):
  """``layers.PolyphaseDownsample(strides=2, p=2)`` for NNX; call with ``index=`` to reuse a phase."""

  linen_class = layers.PolyphaseDownsample


__all__ = [
    "AvgPool", "BatchNorm", "BlurPool", "Conv", "ConvTranspose", "DeformableConv2D",
    "DepthwiseConv", "GlobalAvgPool", "GlobalMaxPool", "MaxBlurPool", "MaxPool",
    "PolyphaseDownsample", "SeparableConv",
]

