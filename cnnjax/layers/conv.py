"""Convolution layers over ``cnnjax.ops.conv``: ``Conv``, ``DepthwiseConv``, ``SeparableConv``.

Channels last: inputs ``(N, *spatial, C_in)``, kernels
``(*kernel_size, C_in / feature_group_count, C_out)``. Fields and parameter
names are those of ``flax.linen.Conv`` (``kernel``, ``bias``), so a
``flax.linen.Conv``'s parameters load into ``cnnjax.layers.Conv`` unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from cnnjax import ops
from cnnjax.layers._checks import check_layer_input, existing_shape, kernel_tuple
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array
Dtype = Any
Initializer = Any
IntSeq = None | int | Sequence[int]

default_kernel_init = nn.initializers.lecun_normal()
default_bias_init = nn.initializers.zeros_init()


def _conv_layer(
    mdl: nn.Module,
    inputs: Array,
    *,
    layer: str,
    kernel_size: tuple[int, ...],
    features: int,
    feature_group_count: int,
    strides: IntSeq,
    padding: PaddingLike,
    input_dilation: IntSeq,
    kernel_dilation: IntSeq,
    use_bias: bool,
    dtype: Dtype | None,
    param_dtype: Dtype,
    precision: lax.PrecisionLike,
    kernel_init: Initializer,
    bias_init: Initializer,
    quoted_kernel_size: Any,
    lowering: str = "auto",
) -> Array:
  """Declares ``kernel``/``bias`` on ``mdl`` and applies ``ops.conv``; shared by the layers."""
  rank = len(kernel_size)
  groups = feature_group_count
  existing = existing_shape(mdl, "params", "kernel")
  channels = None if existing is None else existing[-2] * groups
  source = "" if existing is None else f"(its kernel has shape {existing}, feature_group_count={groups})"
  check_layer_input(layer, inputs, rank, kernel_size=quoted_kernel_size,
                    channels=channels, source=source)
  in_features = inputs.shape[-1]
  if not isinstance(groups, int) or groups < 1:
    raise ValueError(f"{layer}: feature_group_count must be a positive int, got {groups!r}")
  if in_features % groups or features % groups:
    raise ValueError(
        f"{layer}: input channels ({in_features}, input shape {tuple(inputs.shape)}) "
        f"and features ({features}) must both be divisible by "
        f"feature_group_count={groups}")
  kernel_shape = (*kernel_size, in_features // groups, features)
  if existing is not None and existing != kernel_shape:
    raise ValueError(
        f"{layer}: parameter 'kernel' has shape {existing} but kernel_size="
        f"{kernel_size}, features={features} and the input {tuple(inputs.shape)} "
        f"need {kernel_shape}")
  kernel = mdl.param("kernel", kernel_init, kernel_shape, param_dtype)
  bias = mdl.param("bias", bias_init, (features,), param_dtype) if use_bias else None
  x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=dtype)
  return ops.conv(
      x, kernel, bias, strides=strides, padding=padding, lhs_dilation=input_dilation,
      rhs_dilation=kernel_dilation, feature_group_count=groups, precision=precision,
      lowering=lowering)


class Conv(nn.Module):
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
    strides: int or one per spatial axis (default 1).
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
  strides: IntSeq = 1
  padding: PaddingLike = "SAME"
  input_dilation: IntSeq = 1
  kernel_dilation: IntSeq = 1
  feature_group_count: int = 1
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  precision: lax.PrecisionLike = None
  kernel_init: Initializer = default_kernel_init
  bias_init: Initializer = default_bias_init
  lowering: str = "auto"

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Convolves ``(N, *spatial, C_in)`` into ``(N, *spatial_out, features)``."""
    name = type(self).__name__
    return _conv_layer(
        self, inputs, layer=name, kernel_size=kernel_tuple(self.kernel_size, name),
        features=self.features, feature_group_count=self.feature_group_count,
        strides=self.strides, padding=self.padding, input_dilation=self.input_dilation,
        kernel_dilation=self.kernel_dilation, use_bias=self.use_bias, dtype=self.dtype,
        param_dtype=self.param_dtype, precision=self.precision,
        kernel_init=self.kernel_init, bias_init=self.bias_init,
        quoted_kernel_size=self.kernel_size, lowering=self.lowering)


class DepthwiseConv(nn.Module):
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
  strides: IntSeq = 1
  padding: PaddingLike = "SAME"
  input_dilation: IntSeq = 1
  kernel_dilation: IntSeq = 1
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  precision: lax.PrecisionLike = None
  kernel_init: Initializer = default_kernel_init
  bias_init: Initializer = default_bias_init

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, C * depth_multiplier)``."""
    name = type(self).__name__
    kernel_size = kernel_tuple(self.kernel_size, name)
    m = self.depth_multiplier
    if not isinstance(m, int) or m < 1:
      raise ValueError(f"{name}: depth_multiplier must be a positive int, got {m!r}")
    existing = existing_shape(self, "params", "kernel")
    check_layer_input(name, inputs, len(kernel_size), kernel_size=self.kernel_size,
                      channels=None if existing is None else existing[-2],
                      source="" if existing is None else f"(its kernel has shape {existing})")
    c_in = inputs.shape[-1]
    kernel_shape = (*kernel_size, c_in, m)
    if existing is not None and existing != kernel_shape:
      raise ValueError(
          f"{name}: parameter 'kernel' has shape {existing} but kernel_size={kernel_size}, "
          f"depth_multiplier={m} and the input {tuple(inputs.shape)} need {kernel_shape}")
    grouped_shape = (*kernel_size, 1, c_in * m)

    def init(key, shape, dtype=jnp.float32):
      return jnp.reshape(self.kernel_init(key, grouped_shape, dtype), shape)

    kernel = self.param("kernel", init, kernel_shape, self.param_dtype)
    bias = self.param("bias", self.bias_init, (c_in * m,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    return ops.conv(
        x, kernel.reshape(grouped_shape), bias, strides=self.strides, padding=self.padding,
        lhs_dilation=self.input_dilation, rhs_dilation=self.kernel_dilation,
        feature_group_count=c_in, precision=self.precision)


class SeparableConv(nn.Module):
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
  strides: IntSeq = 1
  padding: PaddingLike = "SAME"
  kernel_dilation: IntSeq = 1
  depth_multiplier: int = 1
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  precision: lax.PrecisionLike = None
  kernel_init: Initializer = default_kernel_init
  bias_init: Initializer = default_bias_init

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """``(N, *spatial, C)`` to ``(N, *spatial_out, features)``."""
    kernel_size = kernel_tuple(self.kernel_size, type(self).__name__)
    y = DepthwiseConv(
        kernel_size=self.kernel_size, depth_multiplier=self.depth_multiplier,
        strides=self.strides, padding=self.padding, kernel_dilation=self.kernel_dilation,
        use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
        precision=self.precision, kernel_init=self.kernel_init, name="depthwise")(inputs)
    return Conv(
        features=self.features, kernel_size=(1,) * len(kernel_size), padding="VALID",
        use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
        precision=self.precision, kernel_init=self.kernel_init,
        bias_init=self.bias_init, name="pointwise")(y)
