"""What the model families share: input checks, layer factories, pooling and the head.

Every model names its parts so that features can be read out by name
(``stem``, ``stage1_block0``, ...), sows its pre-logits features as
``('intermediates', 'pre_logits')`` and ends in a ``flax.linen.Dense``
named ``head``; everything before ``head`` is the backbone.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.blocks.common import ModuleDef
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array

#: He (Kaiming) normal, fan-out: torchvision's initialisation of ResNet and MobileNet convolutions.
he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def check_image_input(x: Any, model: str, input_channels: int | None, min_size: int = 1) -> None:
  """Checks a model's input: floating ``(N, H, W, C)``, channels last.

  With ``input_channels`` set the channel count must match it exactly. With
  ``None`` any count is accepted, except an input that looks channels-first
  (axis 1 of size 1 or 3 and a last axis larger than 4), which is the usual
  mistake when data comes from PyTorch.

  Raises:
    TypeError: not an array, or not floating.
    ValueError: wrong rank, channels, or spatial size below ``min_size``,
      naming the expected and received shapes.
  """
  if not hasattr(x, "shape"):
    raise TypeError(f"{model} expects an array (N, H, W, C), got {type(x).__name__}")
  if x.ndim != 4:
    raise ValueError(
        f"{model} expects images (N, H, W, C), channels last (NHWC), rank 4; got "
        f"shape {tuple(x.shape)} (rank {x.ndim})"
        + (" — add a batch axis with x[None]" if x.ndim == 3 else ""))
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
        f"{model} expects floating images (e.g. float32 in [0, 1]), got dtype {x.dtype}; "
        f"cast with x.astype(jnp.float32)")
  c = x.shape[-1]
  if input_channels is not None:
    if c != input_channels:
      hint = (" It looks channels-first (NCHW); transpose with jnp.moveaxis(x, 1, -1)."
              if x.shape[1] == input_channels else "")
      raise ValueError(
          f"{model} expects NHWC input with {input_channels} channels (input_channels="
          f"{input_channels}), got shape {tuple(x.shape)} with {c} on the last axis.{hint}")
  elif x.shape[1] in (1, 3) and c > 4:
    raise ValueError(
        f"{model} expects NHWC input (channels last), got shape {tuple(x.shape)}, which "
        f"looks channels-first (NCHW, {x.shape[1]} channels on axis 1); transpose with "
        f"jnp.moveaxis(x, 1, -1), or set input_channels={c} if the layout is right")
  if min(x.shape[1:3]) < min_size:
    raise ValueError(
        f"{model} needs images of at least {min_size}x{min_size}, got spatial size "
        f"{tuple(x.shape[1:3])} (shape {tuple(x.shape)})")


def conv_def(model: nn.Module, **kwargs: Any) -> ModuleDef:
  """``layers.Conv`` with the model's ``dtype``/``param_dtype``."""
  return functools.partial(layers.Conv, dtype=model.dtype, param_dtype=model.param_dtype, **kwargs)


def batch_norm_def(model: nn.Module, **kwargs: Any) -> ModuleDef:
  """``layers.BatchNorm`` with the model's dtypes and ``axis_name`` (statistics over devices)."""
  return functools.partial(
      layers.BatchNorm, dtype=model.dtype, param_dtype=model.param_dtype,
      axis_name=getattr(model, "axis_name", None), **kwargs)


def max_pool(x: Array, window: int, strides: int, padding: PaddingLike,
             downsample: ModuleDef | None, name: str) -> Array:
  """A strided max-pool, or a stride-1 max-pool then ``downsample`` (MaxBlurPool when blurring).

  In the antialiased form a ``'VALID'`` pool becomes ``'SAME'`` at stride 1
  so that the size stays divisible by the stride (``PolyphaseDownsample``
  needs it); the output is then ``ceil(n / s)`` where the strided ``'VALID'``
  pool gives ``floor((n - k) / s) + 1`` (equal for ``k = s`` and even ``n``).

  Submodules ``name`` (``layers.MaxPool``) and ``name + '_downsample'``.
  """
  if downsample is None or strides == 1:
    return layers.MaxPool((window, window), (strides, strides), padding, name=name)(x)
  if isinstance(padding, str) and padding.upper() == "VALID":
    padding = "SAME"
  x = layers.MaxPool((window, window), (1, 1), padding, name=name)(x)
  return downsample(strides=(strides, strides), name=f"{name}_downsample")(x)


def classifier_head(model: nn.Module, features: Array) -> Array:
  """Sows ``features`` as ``pre_logits`` and applies the ``head`` Dense; float32 logits."""
  model.sow("intermediates", "pre_logits", features)
  logits = nn.Dense(model.num_classes, dtype=model.dtype, param_dtype=model.param_dtype,
                    name="head")(features)
  return jnp.asarray(logits, jnp.float32)
