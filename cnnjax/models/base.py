"""What the model families share: input checks, layer factories, pooling and the head.

Every model names its parts so that features can be read out by name
(``stem``, ``stage1_block0``, ...), sows its pre-logits features as
``('intermediates', 'pre_logits')`` and ends in a ``flax.linen.Dense``
named ``head``; everything before ``head`` is the backbone.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.layers import initializers
from cnnjax.blocks.common import ModuleDef
from cnnjax.ops import validation
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any


def field(default: Any) -> Any:
  """A keyword-only model field: shared fields may follow a model's required ones."""
  return dataclasses.field(default=default, kw_only=True)


class Classifier(nn.Module):
  """The fields every classifier shares (keyword-only).

  Attributes:
    num_classes: output logits (a model redeclares the field for another default).
    dtype: computation dtype; logits are float32.
    param_dtype: parameter dtype.
  """

  num_classes: int = field(1000)
  dtype: Dtype = field(jnp.float32)
  param_dtype: Dtype = field(jnp.float32)


class ImageClassifier(Classifier):
  """The fields every image classifier shares, and its input check.

  Attributes:
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``: every strided
      convolution and pool becomes stride 1 followed by a ``BlurPool`` or a
      ``PolyphaseDownsample`` (``blocks.common.downsample_def``).
    input_channels: expected channels, or ``None`` to accept any (an input
      that looks channels-first is refused).
    axis_name: device axis BatchNorm averages its statistics over (unused by
      models without BatchNorm).
  """

  downsample: str = field("stride")
  input_channels: int | None = field(None)
  axis_name: str | None = field(None)

  def check_input(self, x: Any, min_size: int = 1) -> None:
    """``check_image_input`` with the model's class name and ``input_channels``."""
    check_image_input(x, type(self).__name__, self.input_channels, min_size)

#: He (Kaiming) normal, fan-out: torchvision's initialisation of ResNet and MobileNet convolutions.
he_fan_out = initializers.variance_scaling(2.0, "fan_out", "normal")


def check_image_input(x: Any, model: str, input_channels: int | None, min_size: int = 1) -> None:
  """Checks a model's input: floating ``(N, H, W, C)``, channels last.

  With ``input_channels`` set the channel count must match it exactly. With
  ``None`` any count is accepted, except an input that looks channels-first
  (axis 1 of size 1 or 3 and a last axis larger than 4), which is the usual
  mistake when data comes from PyTorch (``ops.validation.looks_channels_first``).

  Raises:
    TypeError: not an array, or not floating.
    ValueError: wrong rank, channels, or spatial size below ``min_size``,
      naming the expected and received shapes.
  """
  validation.check_image(x, model, input_channels, what=f"input_channels={input_channels}",
                         min_size=min_size, images=True)


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
                    kernel_init=initializers.lecun_normal(), name="head")(features)
  return jnp.asarray(logits, jnp.float32)
