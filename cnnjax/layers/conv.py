"""Convolution layers over ``cnnjax.ops.conv``: ``Conv``, ``DepthwiseConv``, ``SeparableConv``.

Channels last: inputs ``(N, *spatial, C_in)``, kernels
``(*kernel_size, C_in / feature_group_count, C_out)``. Fields and parameter
names are those of ``flax.linen.Conv`` (``kernel``, ``bias``), so a
``flax.linen.Conv``'s parameters load into ``cnnjax.layers.Conv`` unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from cnnjax import ops
from cnnjax.layers import initializers
from cnnjax.layers._checks import check_layer_input, existing_shape, kernel_tuple
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any
Initializer = Any
IntSeq = None | int | Sequence[int]

# LeCun normal, as flax.linen.Conv: the same numbers, drawn flat (initializers.py: faster compile).
default_kernel_init = initializers.lecun_normal()
default_bias_init = nn.initializers.zeros_init()


def _kw(default: Any) -> Any:
  """A keyword-only field: the shared fields follow each layer's own positional head."""
  return dataclasses.field(default=default, kw_only=True)


class _ConvBase(nn.Module):
  """The fields and the kernel logic every convolution layer shares.

  A subclass declares its positional head (``features``, ``kernel_size``,
  ...) and its own fields, and says how its kernel is shaped
  (``kernel_shape``) and which input channel count an existing kernel
  implies (``kernel_channels``); ``declare_kernel`` then checks the input
  (at ``init`` as at ``apply``), checks the field values, and declares
  ``kernel`` and ``bias`` with the same words for every layer. The NNX
  layers (``cnnjax.nnx``) are built from these same modules.

  Attributes (keyword-only):
    strides: int or one per spatial axis (``None``: 1).
    padding: see each layer.
    kernel_dilation: int or one per spatial axis (``None``: 1).
    use_bias: add a bias.
    dtype: computation and output dtype (default: promoted from input and
      parameters).
    param_dtype: dtype of the parameters (default float32).
    precision: ``lax`` precision of the convolution.
    kernel_init: initializer of ``kernel`` (default LeCun normal).
    bias_init: initializer of ``bias`` (default zeros).
  """

  strides: IntSeq = _kw(1)
  padding: PaddingLike = _kw("SAME")
  kernel_dilation: IntSeq = _kw(1)
  use_bias: bool = _kw(True)
  dtype: Dtype | None = _kw(None)
  param_dtype: Dtype = _kw(jnp.float32)
  precision: lax.PrecisionLike = _kw(None)
  kernel_init: Initializer = _kw(default_kernel_init)
  bias_init: Initializer = _kw(default_bias_init)

  #: Spatial axes an int ``kernel_size`` stands for.
  int_kernel_rank: ClassVar[int] = 1

  @property
  def layer_name(self) -> str:
    return type(self).__name__

  def kernel_size_tuple(self) -> tuple[int, ...]:
    """``kernel_size`` as a validated tuple, one entry per spatial axis."""
    return kernel_tuple(self.kernel_size, self.layer_name, self.int_kernel_rank)

  def kernel_shape(self, in_features: int) -> tuple[int, ...]:
    """The ``kernel`` shape for ``in_features`` input channels."""
    return (*self.kernel_size_tuple(), in_features, self.features)

  def kernel_channels(self, shape: tuple[int, ...]) -> int:
    """The input channel count a kernel of ``shape`` expects."""
    return shape[-2]

  def kernel_source(self, shape: tuple[int, ...]) -> str:
    """Where the expected channel count comes from, for the message."""
    return f"(its kernel has shape {shape})"

  def bias_features(self, in_features: int) -> int:
    return self.features

  def check_fields(self, inputs: Array) -> None:
    """Checks field values against the input (group divisibility, ...)."""

  def kernel_initializer(self, in_features: int) -> Initializer:
    return self.kernel_init

  def declare_kernel(self, inputs: Array) -> tuple[Array, Array | None]:
    """Checks ``inputs`` and the fields, declares ``kernel`` and ``bias``; returns them."""
    kernel_size = self.kernel_size_tuple()
    existing = existing_shape(self, "params", "kernel")
    check_layer_input(
        self.layer_name, inputs, len(kernel_size), kernel_size=self.kernel_size,
        channels=None if existing is None else self.kernel_channels(existing),
        source="" if existing is None else self.kernel_source(existing))
    self.check_fields(inputs)
    in_features = inputs.shape[-1]
    shape = self.kernel_shape(in_features)
    if existing is not None and existing != shape:
      raise ValueError(
          f"{self.layer_name}: parameter 'kernel' has shape {existing} but the fields "
          f"(kernel_size={kernel_size}) and the input {tuple(inputs.shape)} need {shape}")
    kernel = self.param("kernel", self.kernel_initializer(in_features), shape, self.param_dtype)
    bias = None
    if self.use_bias:
      bias = self.param("bias", self.bias_init, (self.bias_features(in_features),), self.param_dtype)
    return kernel, bias


class Conv(_ConvBase):
  """N-D convolution, channels last, over ``cnnjax.ops.conv``.

  The rank (1-D, 2-D or 3-D) is ``len(kernel_size)``; as in ``flax.linen``
  an int ``kernel_size`` means one spatial axis. Every padding mode of
  ``ops.conv`` is accepted. Inputs have exactly one batch axis,
  ``(N, *spatial, C_in)``; ``flax.linen.Conv`` also accepts none or several,
  here that is an error, so that a channels-first or unbatched array is
  reported rather than silently reinterpreted.

  Example::

    >>> import jax, jax.numpy as jnp
    >>> from cnnjax.layers import Conv
    >>> layer = Conv(features=6, kernel_size=(3, 3), padding='VALID')
    >>> y, variables = layer.init_with_output(jax.random.key(0), jnp.ones((4, 28, 28, 3)))
    >>> y.shape, variables['params']['kernel'].shape
    ((4, 26, 26, 6), (3, 3, 3, 6))

  Attributes:
    features: number of output channels ``C_out``.
    kernel_size: spatial kernel shape, e.g. ``(3, 3)``.
    strides: int or one per spatial axis (default 1). This and every
      attribute after ``kernel_size`` are keyword-only.
    padding: ``'SAME'`` (default, as Flax), ``'VALID'``, ``'CIRCULAR'``,
      ``'REFLECT'``, ``'CAUSAL'`` (1-D), an int, or ``((lo, hi), ...)``.
      ``'CIRCULAR'``/``'REFLECT'`` pad by the ``'SAME'`` amounts; at stride 1
      that is Flax's ``((k - 1) // 2, k // 2)``, at larger strides the
      ``'SAME'`` amounts for that stride (Flax keeps the stride-1 amounts).
    input_dilation: int or one per spatial axis: zeros inserted between input
      elements (a fractionally strided convolution).
    kernel_dilation: int or one per spatial axis (atrous convolution).
    feature_group_count: grouped convolution; ``C_in`` and ``features`` must
      be divisible by it.
    use_bias: add a ``(features,)`` bias.
    dtype: computation and output dtype (default: promoted from input and
      parameters).
    param_dtype: dtype of the parameters (default float32).
    precision: ``lax`` precision of the convolution.
    kernel_init: initializer of ``kernel`` ``(*kernel_size, C_in / groups,
      features)`` (default LeCun normal).
    bias_init: initializer of ``bias`` (default zeros).
    lowering: ``'auto'`` (default), ``'lax'``, ``'chunked'`` or
      ``'matmul'``: how ``ops.conv`` computes the convolution (the same
      function either way);
      ``'auto'`` is ``ops.choose_lowering``'s measured pick per shape and
      backend (always ``'lax'`` off CPU).
  """

  features: int
  kernel_size: int | Sequence[int]
  input_dilation: IntSeq = _kw(1)
  feature_group_count: int = _kw(1)
  lowering: str = _kw("auto")

  def kernel_shape(self, in_features: int) -> tuple[int, ...]:
    return (*self.kernel_size_tuple(), in_features // self.feature_group_count, self.features)

  def kernel_channels(self, shape: tuple[int, ...]) -> int:
    return shape[-2] * self.feature_group_count

  def kernel_source(self, shape: tuple[int, ...]) -> str:
    return f"(its kernel has shape {shape}, feature_group_count={self.feature_group_count})"

  def check_fields(self, inputs: Array) -> None:
    groups = self.feature_group_count
    if not isinstance(groups, int) or groups < 1:
      raise ValueError(f"{self.layer_name}: feature_group_count must be a positive int, got {groups!r}")
    if inputs.shape[-1] % groups or self.features % groups:
      raise ValueError(
          f"{self.layer_name}: input channels ({inputs.shape[-1]}, input shape "
          f"{tuple(inputs.shape)}) and features ({self.features}) must both be divisible "
          f"by feature_group_count={groups}")

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Convolves ``(N, *spatial, C_in)`` into ``(N, *spatial_out, features)``."""
    kernel, bias = self.declare_kernel(inputs)
    x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    return ops.conv(
        x, kernel, bias, strides=self.strides, padding=self.padding,
        lhs_dilation=self.input_dilation, rhs_dilation=self.kernel_dilation,
        feature_group_count=self.feature_group_count, precision=self.precision,
        lowering=self.lowering)


class DepthwiseConv(_ConvBase):
  """Depthwise convolution: each input channel convolved with its own filters.

  A grouped convolution with ``feature_group_count = C_in``: input channel
  ``c`` produces output channels ``c * depth_multiplier + j``,
  ``j < depth_multiplier``. The ``kernel`` is stored as Keras'
  ``DepthwiseConv2D`` stores it, ``(*kernel_size, C_in, depth_multiplier)``,
  so Keras weights load unchanged; reshaped to
  ``(*kernel_size, 1, C_in * depth_multiplier)`` it is the kernel of the
  equivalent grouped ``Conv``. ``kernel_init`` is called with that grouped
  shape, so fan-in based initialisers see the true fan-in ``prod(kernel_size)``.
  ``bias`` is ``(C_in * depth_multiplier,)``.

  Attributes:
    kernel_size: spatial kernel shape, e.g. ``(3, 3)``.
    depth_multiplier: output channels per input channel.
    strides, padding, input_dilation, kernel_dilation, use_bias, dtype,
    param_dtype, precision, kernel_init, bias_init: as in ``Conv``.
  """

  kernel_size: int | Sequence[int]
  depth_multiplier: int = 1
  input_dilation: IntSeq = _kw(1)

  def kernel_shape(self, in_features: int) -> tuple[int, ...]:
    return (*self.kernel_size_tuple(), in_features, self.depth_multiplier)

  def bias_features(self, in_features: int) -> int:
    return in_features * self.depth_multiplier

  def check_fields(self, inputs: Array) -> None:
    m = self.depth_multiplier
    if not isinstance(m, int) or m < 1:
      raise ValueError(f"{self.layer_name}: depth_multiplier must be a positive int, got {m!r}")

  def grouped_shape(self, in_features: int) -> tuple[int, ...]:
    """The kernel of the equivalent grouped ``Conv``: ``(*kernel_size, 1, C_in * m)``."""
    return (*self.kernel_size_tuple(), 1, in_features * self.depth_multiplier)

  def kernel_initializer(self, in_features: int) -> Initializer:
    grouped = self.grouped_shape(in_features)

    def init(key, shape, dtype=jnp.float32):
      # Fan-in based initialisers see the true fan-in prod(kernel_size).
      return jnp.reshape(self.kernel_init(key, grouped, dtype), shape)

    return init

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, C * depth_multiplier)``."""
    kernel, bias = self.declare_kernel(inputs)
    c_in = inputs.shape[-1]
    x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    return ops.conv(
        x, kernel.reshape(self.grouped_shape(c_in)), bias, strides=self.strides,
        padding=self.padding, lhs_dilation=self.input_dilation,
        rhs_dilation=self.kernel_dilation, feature_group_count=c_in, precision=self.precision)


class SeparableConv(_ConvBase):
  """Depthwise separable convolution: a ``DepthwiseConv`` then a 1x1 ``Conv``.

  As Keras' ``SeparableConv2D``: the depthwise step has no bias, the
  pointwise step carries the only bias. On a ``(4, 28, 28, 12)`` input with
  ``features=6, kernel_size=(2, 2), padding='VALID'``: depthwise kernel
  ``(2, 2, 12, 1)``, pointwise kernel ``(1, 1, 12, 6)``, bias ``(6,)``,
  output ``(4, 27, 27, 6)``, ``2*2*12 + 12*6 + 6 = 126`` parameters (against
  ``2*2*12*6 + 6 = 294`` for a ``Conv``).

  Parameters live in two submodules, ``depthwise`` (``kernel``
  ``(*kernel_size, C_in, depth_multiplier)``) and ``pointwise`` (``kernel``
  ``(1, ..., 1, C_in * depth_multiplier, features)``, ``bias``), in Keras'
  layouts.

  Attributes:
    features: output channels of the pointwise step.
    kernel_size: spatial kernel of the depthwise step.
    strides, padding, kernel_dilation: of the depthwise step.
    depth_multiplier: depthwise outputs per input channel.
    use_bias: bias on the pointwise step.
    dtype, param_dtype, precision, kernel_init, bias_init: as in ``Conv``,
      for both steps.
  """

  features: int
  kernel_size: int | Sequence[int]
  depth_multiplier: int = _kw(1)

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, features)``."""
    kernel_size = self.kernel_size_tuple()
    # Checked here too so that errors name the layer the user built.
    check_layer_input(self.layer_name, inputs, len(kernel_size), kernel_size=self.kernel_size)
    shared = dict(dtype=self.dtype, param_dtype=self.param_dtype, precision=self.precision,
                  kernel_init=self.kernel_init)
    y = DepthwiseConv(
        self.kernel_size, self.depth_multiplier, strides=self.strides, padding=self.padding,
        kernel_dilation=self.kernel_dilation, use_bias=False, name="depthwise", **shared)(inputs)
    return Conv(
        self.features, (1,) * len(kernel_size), padding="VALID", use_bias=self.use_bias,
        bias_init=self.bias_init, name="pointwise", **shared)(y)
