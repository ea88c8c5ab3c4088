"""What every block shares: module factories, padding, norms and antialiased downsampling.

Blocks receive their building parts as *module factories* (``ModuleDef``),
usually ``functools.partial`` of a layer class, as in the Flax ImageNet
example::

  conv = partial(layers.Conv, use_bias=False, dtype=jnp.bfloat16)
  norm = partial(layers.BatchNorm, momentum=0.9)
  block = BasicBlock(64, conv=conv, norm=norm)

so that a different convolution (separable, deformable), another
normalisation or an antialiased downsampling layer swaps in without editing
the block. The conventions the blocks rely on:

* ``conv(features, kernel_size, strides=..., padding=..., feature_group_count=..., name=...)``
  returns a module mapping ``(N, H, W, C_in) -> (N, H', W', features)``.
* ``norm(name=..., [scale_init=...])`` returns a module called as
  ``module(x, train=train)`` when its ``__call__`` takes ``train`` (as
  ``cnnjax.layers.BatchNorm``) and as ``module(x)`` otherwise (as
  ``flax.linen.GroupNorm`` or ``LayerNorm``). ``norm=None`` means no norm.
* ``act`` is a function ``x -> x`` (``nn.relu``, ``nn.relu6``), or ``None``.
* ``downsample(strides=s, name=...)`` returns a module mapping
  ``(N, H, W, C) -> (N, ceil(H / s), ceil(W / s), C)``, or ``downsample`` is
  ``None`` and strided convolutions and poolings are used as they are.

When ``downsample`` is given, every strided operation is replaced, as in
Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019) and
Chaman & Dokmanic, "Truly Shift-Invariant Convolutional Neural Networks"
(CVPR 2021): the convolution or pooling runs at stride 1, then the norm and
the nonlinearity, then ``downsample`` (a blur or an adaptive polyphase
selection) reduces the resolution. Output shapes are those of the strided
original whenever its padding is the symmetric ``k // 2`` (or ``'SAME'``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import layers
from cnnjax.ops import validation
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
ModuleDef = Callable[..., nn.Module]
Activation = Callable[[Array], Array]

#: Values of a model's ``downsample`` field.
DOWNSAMPLE_MODES = ("stride", "blur", "aps")


def downsample_def(mode: str, **kwargs: Any) -> ModuleDef | None:
  """The ``downsample`` factory for a model's ``downsample`` string.

  Args:
    mode: ``'stride'`` (no replacement: strided convolutions and poolings,
      returns ``None``), ``'blur'`` (``layers.BlurPool``, antialiasing) or
      ``'aps'`` (``layers.PolyphaseDownsample``, adaptive polyphase
      sampling, shift invariance under circular shifts).
    **kwargs: fields passed to the layer, e.g. the blur filter size.

  Returns:
    ``None`` or a factory called as ``factory(strides=s, name=...)``.
  """
  if mode not in DOWNSAMPLE_MODES:
    raise ValueError(f"downsample must be one of {DOWNSAMPLE_MODES}, got {mode!r}")
  if mode == "stride":
    if kwargs:
      raise TypeError(f"downsample='stride' takes no options, got {sorted(kwargs)}")
    return None
  if mode == "blur":
    return functools.partial(layers.BlurPool, **kwargs)
  return functools.partial(layers.PolyphaseDownsample, **kwargs)


def pair(value: int | Sequence[int], rank: int = 2) -> tuple[int, ...]:
  """An int broadcast to a ``rank``-tuple of positive ints; a sequence checked and returned as a tuple."""
  return validation.as_tuple(value, rank, "kernel_size or strides")


def symmetric_padding(kernel_size: Sequence[int], dilation: int = 1) -> tuple[tuple[int, int], ...]:
  """PyTorch's padding ``k // 2`` on both sides of each axis (``((1, 1), (1, 1))`` for 3x3).

  At stride 1 and odd kernels it equals ``'SAME'``; at stride 2 it differs
  from ``'SAME'`` (which pads ``(0, 1)`` on even inputs), and it is what
  torchvision's ResNet, VGG and MobileNet use, so weights import exactly.
  """
  return tuple((dilation * (k - 1) // 2,) * 2 for k in kernel_size)


def conv_padding(padding: PaddingLike | None, kernel_size: Sequence[int]) -> PaddingLike:
  """A block's ``padding`` field resolved for one kernel: ``None`` means ``symmetric_padding``."""
  return symmetric_padding(kernel_size) if padding is None else padding


def takes_train(module: nn.Module) -> bool:
  """Whether ``module.__call__`` has a ``train`` argument."""
  try:
    return "train" in inspect.signature(type(module).__call__).parameters
  except (TypeError, ValueError):
    return False


def apply_norm(module: nn.Module | None, x: Array, train: bool) -> Array:
  """Calls a norm module with ``train=`` when it takes it; ``None`` is the identity."""
  if module is None:
    return x
  return module(x, train=train) if takes_train(module) else module(x)


def make_norm(norm: ModuleDef | None, name: str, zero_init: bool = False) -> nn.Module | None:
  """Builds a norm from its factory; ``zero_init`` sets its scale to zeros (last norm of a residual)."""
  if norm is None:
    return None
  if zero_init:
    return norm(name=name, scale_init=nn.initializers.zeros_init())
  return norm(name=name)


def check_image(x: Any, name: str, channels: int | None = None) -> None:
  """Checks that a block's input is a floating ``(N, H, W, C)`` array (``ops.validation.check_image``).

  Raises:
    TypeError: not an array, or not floating.
    ValueError: not rank 4, or ``channels`` given and the last axis differs.
  """
  validation.check_image(x, name, channels)


class ConvNormAct(nn.Module):
  """Convolution, norm and nonlinearity, with an optional antialiased downsampling.

  ``(N, H, W, C_in) -> (N, H', W', features)``. With ``strides > 1`` and a
  ``downsample`` factory the convolution runs at stride 1 and
  ``downsample(strides)`` follows the nonlinearity (the order recommended by
  Zhang, 2019); otherwise the convolution itself is strided.

  Submodules: ``conv``, ``norm`` (absent when ``norm`` is None) and
  ``downsample`` (only when used).

  Attributes:
    features: output channels.
    kernel_size: e.g. ``(3, 3)``; an int means square.
    strides: int or pair.
    conv: convolution factory (e.g. ``partial(layers.Conv, use_bias=False)``).
    norm: norm factory, or None.
    act: nonlinearity, or None for a linear output.
    downsample: downsampling factory, or None for strided convolution.
    padding: ``None`` for PyTorch's symmetric ``k // 2``, or any padding
      accepted by the convolution (``'SAME'``, ``'CIRCULAR'``, pairs).
    feature_group_count: groups of the convolution (``C_in`` for depthwise).
    zero_init_norm: initialise the norm's scale to zero.
  """

  features: int
  kernel_size: int | Sequence[int]
  conv: ModuleDef
  norm: ModuleDef | None = None
  act: Activation | None = nn.relu
  strides: int | Sequence[int] = 1
  downsample: ModuleDef | None = None
  padding: PaddingLike | None = None
  feature_group_count: int = 1
  zero_init_norm: bool = False

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the layer to ``(N, H, W, C_in)``."""
    kernel = pair(self.kernel_size)
    strides = pair(self.strides)
    antialias = self.downsample is not None and any(s > 1 for s in strides)
    y = self.conv(
        self.features, kernel, strides=(1, 1) if antialias else strides,
        padding=conv_padding(self.padding, kernel),
        feature_group_count=self.feature_group_count, name="conv")(x)
    y = apply_norm(make_norm(self.norm, "norm", self.zero_init_norm), y, train)
    if self.act is not None:
      y = self.act(y)
    if antialias:
      y = self.downsample(strides=strides, name="downsample")(y)
    return y
