"""Residual-branch layers Flax has none of: ``DropPath``, ``LayerScale``, ``SqueezeExcite``.

``DropPath`` is stochastic depth (Huang et al., "Deep Networks with
Stochastic Depth", ECCV 2016) in its per-example form (timm's ``drop_path``,
torchvision's ``StochasticDepth(mode='row')``); ``LayerScale`` is the
learned per-channel scale of a residual branch (Touvron et al., "Going
deeper with Image Transformers", ICCV 2021; ConvNeXt); ``SqueezeExcite`` is
Hu et al., "Squeeze-and-Excitation Networks" (CVPR 2018), with 1x1
convolutions as torchvision's ``SqueezeExcitation``. Channels last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.layers.conv import Conv

Array = jax.Array
Dtype = Any


class DropPath(nn.Module):
  """Drops a whole residual branch per example with probability ``rate`` (stochastic depth).

  ``(N, ...) -> (N, ...)``. In training each example's branch is zeroed
  with probability ``rate`` and kept ones are divided by ``1 - rate``, so the
  expectation is unchanged; in evaluation (``train=False``) or at
  ``rate == 0`` it is the identity. Apply it to the branch, before the sum
  with the shortcut: ``x + DropPath(rate)(branch(x), train)``.

  Randomness comes from the ``'dropout'`` rng stream, the one
  ``flax.linen.Dropout`` uses, so a training step that feeds dropout feeds
  stochastic depth too: ``model.apply(v, x, train=True, rngs={'dropout': key})``.

  Attributes:
    rate: probability of dropping the branch, in ``[0, 1)``.
    rng_collection: the rng stream (``'dropout'``).
  """

  rate: float
  rng_collection: str = "dropout"

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies stochastic depth to ``(N, ...)``; the identity unless ``train`` and ``rate > 0``."""
    if not 0.0 <= self.rate < 1.0:
      raise ValueError(f"DropPath rate must be in [0, 1), got {self.rate}")
    if not train or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    rng = self.make_rng(self.rng_collection)
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class LayerScale(nn.Module):
  """Multiplies the last (channel) axis by a learned vector ``gamma`` initialised to ``init_value``.

  ``(..., C) -> (..., C)``; parameter ``gamma`` of shape ``(C,)`` (PyTorch
  ConvNeXt stores it as ``(C, 1, 1)``).

  Attributes:
    init_value: initial value of every entry (1e-6 in ConvNeXt).
    dtype: computation dtype (default: the input's).
    param_dtype: dtype of ``gamma``.
  """

  init_value: float = 1e-6
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Scales ``(..., C)`` channel-wise."""
    gamma = self.param("gamma", nn.initializers.constant(self.init_value), (x.shape[-1],),
                       self.param_dtype)
    dtype = x.dtype if self.dtype is None else self.dtype
    return jnp.asarray(x, dtype) * jnp.asarray(gamma, dtype)


class SqueezeExcite(nn.Module):
  """Channel attention: ``x * gate(fc2(act(fc1(mean_hw(x)))))``.

  ``(N, H, W, C) -> (N, H, W, C)``. ``fc1`` (``C -> squeeze_features``) and
  ``fc2`` (``squeeze_features -> C``) are 1x1 convolutions with biases on
  the pooled ``(N, 1, 1, C)`` map, as torchvision's ``SqueezeExcitation``,
  so their weights import as they are.

  Submodules: ``fc1``, ``fc2``.

  Attributes:
    squeeze_features: hidden units (``C_in // 4`` of the block's input in
      EfficientNet).
    act: nonlinearity after ``fc1`` (SiLU in EfficientNet, ReLU in SENet).
    gate: nonlinearity giving the channel weights (sigmoid).
    dtype: computation dtype; param_dtype: dtype of the weights.
  """

  squeeze_features: int
  act: Callable[[Array], Array] = nn.silu
  gate: Callable[[Array], Array] = nn.sigmoid
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """Reweights the channels of ``(N, H, W, C)``."""
    if x.ndim != 4:
      raise ValueError(f"SqueezeExcite expects (N, H, W, C), got shape {tuple(x.shape)}")
    if self.squeeze_features < 1:
      raise ValueError(f"squeeze_features must be >= 1, got {self.squeeze_features}")
    # The mean in float32: a sum over H*W terms in bf16 loses the low bits.
    s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(x.dtype)
    none = ((0, 0), (0, 0))
    s = Conv(self.squeeze_features, (1, 1), padding=none, dtype=self.dtype,
             param_dtype=self.param_dtype, name="fc1")(s)
    s = Conv(x.shape[-1], (1, 1), padding=none, dtype=self.dtype,
             param_dtype=self.param_dtype, name="fc2")(self.act(s))
    return x * self.gate(s).astype(x.dtype)
