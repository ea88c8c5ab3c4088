"""Batch normalization (Ioffe and Szegedy, 2015) with cross-device statistics.

Variables are named as ``flax.linen.BatchNorm``'s (``params``: ``scale``,
``bias``; ``batch_stats``: ``mean``, ``var``) and its mode is spelled either
way (``train`` or Flax's ``use_running_average``), so variables move between
the two and code written for ``flax.linen.BatchNorm`` runs unchanged. The
statistics differ in one respect: the variance here is ``E[x^2] - E[x]^2``
clamped at zero, in float32 for every input dtype.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import canonicalize_dtype
from jax import lax

from cnnjax.layers._checks import existing_shape
from cnnjax.ops import collectives
from cnnjax.ops.validation import channels_first_hint, check_array, check_floating, looks_channels_first

Array = jax.Array
Dtype = Any
Initializer = Any


def batch_moments(
    x: Array,
    axes: tuple[int, ...],
    axis_name: str | None = None,
    axis_index_groups: Any = None,
) -> tuple[Array, Array]:
  """Mean and biased variance over ``axes`` (and over ``axis_name``), in at least float32.

  Computed as ``E[x]`` and ``max(E[x^2] - E[x]^2, 0)`` so that one
  ``lax.pmean`` of the stacked pair averages both across devices (skipped
  when the axis has one device: ``ops.collectives``); the clamp removes the
  small negative values cancellation can produce.

  Args:
    x: any shape; reduced over ``axes``.
    axes: the axes to reduce.
    axis_name: a bound ``pmap``/``shard_map`` axis to average over as well.
    axis_index_groups: subgroups of ``axis_name`` to average within.

  Returns:
    ``(mean, var)`` with the shape of ``x`` without ``axes``, float32 (or
    float64 for float64 inputs).
  """
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  moments = jnp.stack([jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)])
  if axis_name is not None:
    moments = collectives.pmean(moments, axis_name, axis_index_groups,
                                caller=f"BatchNorm(axis_name={axis_name!r})")
  mean, mean2 = moments[0], moments[1]
  return mean, jnp.maximum(mean2 - jnp.square(mean), 0.0)


def resolve_train(train: bool | None, field: bool | None, call: bool | None) -> bool:
  """The training flag from ``train`` and the field and call values of ``use_running_average``.

  Raises:
    ValueError: the field and the call argument both set, ``train`` and
      ``use_running_average`` disagreeing, or no mode given at all.
    TypeError: a mode that is not a bool.
  """
  if field is not None and call is not None:
    raise ValueError(
        "BatchNorm: use_running_average was given both as a field "
        f"({field}) and as a call argument ({call}); give it once")
  running = call if call is not None else field
  for what, value in (("train", train), ("use_running_average", running)):
    if value is not None and not isinstance(value, (bool, np.bool_)):
      raise TypeError(f"BatchNorm: {what} must be a bool, got {type(value).__name__}")
  if train is None and running is None:
    raise TypeError(
        "BatchNorm needs its mode: call it with train=True/False (or Flax's "
        "use_running_average=False/True, as a field or a call argument)")
  if train is not None and running is not None and bool(train) == bool(running):
    raise ValueError(
        f"BatchNorm: train={train} contradicts use_running_average={running} "
        f"(use_running_average means train=False); give one of them")
  return bool(train) if train is not None else not bool(running)


class BatchNorm(nn.Module):
  """Batch normalization over every axis but ``axis`` (channels last by default).

  ``train=True``: normalises with the statistics of the batch and updates
  the running statistics in the ``batch_stats`` collection (call ``apply``
  with ``mutable=['batch_stats']``) as Flax does::

    mean <- momentum * mean + (1 - momentum) * batch_mean

  (and the same for ``var``, the biased batch variance). During ``init`` the
  running statistics are not updated. ``train=False``: normalises with the
  running statistics.

  Under ``jax.pmap`` (or ``jax.shard_map``) with ``axis_name`` set, the
  statistics are averaged over the devices that ``axis_name`` names (within
  ``axis_index_groups`` if given): BatchNorm then normalises over what
  ``axis_name`` names, the concatenation of the per-device batches, not over
  one device's batch. A mean and a mean of squares are averaged by a single
  ``lax.pmean``. Called with an ``axis_name`` that is not bound, it raises a
  ``ValueError``.

  Mixed precision: moments are computed in float32 even for bfloat16 inputs,
  the variance is clamped at zero, ``scale``/``bias`` are kept in
  ``param_dtype`` (float32 by default) and the statistics in float32; the
  output is in ``dtype``.

  Example::

    >>> import jax, jax.numpy as jnp
    >>> from cnnjax.layers import BatchNorm
    >>> bn = BatchNorm()
    >>> x = jnp.ones((8, 4, 4, 3))
    >>> variables = bn.init(jax.random.key(0), x, train=False)
    >>> y, updates = bn.apply(variables, x, train=True, mutable=['batch_stats'])
    >>> updates['batch_stats']['mean'].shape
    (3,)

  Attributes:
    momentum: decay of the running statistics (default 0.99, as Flax).
    epsilon: added to the variance (default 1e-5).
    dtype: output dtype (default: promoted from input and parameters).
    param_dtype: dtype of ``scale`` and ``bias`` (default float32).
    use_bias: learn a ``bias`` (beta).
    use_scale: learn a ``scale`` (gamma).
    bias_init: initializer of ``bias`` (zeros).
    scale_init: initializer of ``scale`` (ones).
    axis: the feature axis (default -1, channels last).
    axis_name: the ``pmap``/``shard_map`` axis to average statistics over.
    axis_index_groups: groups of device indices along ``axis_name`` that
      share statistics, e.g. ``[[0, 1], [2, 3]]``.
    use_running_average: Flax's spelling of the mode as a field (``True``
      for evaluation); ``None`` (default) takes the mode from the call.
  """

  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  use_bias: bool = True
  use_scale: bool = True
  bias_init: Initializer = nn.initializers.zeros_init()
  scale_init: Initializer = nn.initializers.ones_init()
  axis: int = -1
  axis_name: str | None = None
  axis_index_groups: Any = None
  use_running_average: bool | None = None

  @nn.compact
  def __call__(self, x: Array, train: bool | None = None, *,
               use_running_average: bool | None = None) -> Array:
    """Normalizes ``x``.

    The mode is ``train`` (cnnjax's spelling) or ``use_running_average``
    (Flax's, ``= not train``), given as a call argument or, for
    ``use_running_average``, as a field. As ``flax.linen.merge_param``:
    the field and the call argument may not both be set; ``train`` and
    ``use_running_average`` may both be given only if they agree.

    Args:
      x: ``(N, ..., C)`` (any rank >= 2), features on ``axis``.
      train: use and update batch statistics (``True``) or use the running
        statistics (``False``).
      use_running_average: Flax's spelling: ``True`` is ``train=False``.

    Returns:
      The normalized ``x``, same shape, in ``dtype``.
    """
    train = resolve_train(train, self.use_running_average, use_running_average)
    check_array(x, "BatchNorm:", "an array as input")
    if x.ndim < 2:
      raise ValueError(
          f"BatchNorm: expected an input of rank >= 2, (N, ..., C) with features on "
          f"axis {self.axis}, got shape {tuple(x.shape)}")
    check_floating("BatchNorm input", x)
    axis = self.axis % x.ndim if -x.ndim <= self.axis < x.ndim else None
    if axis is None:
      raise ValueError(f"BatchNorm: axis={self.axis} is out of range for an input of shape {tuple(x.shape)}")
    features = x.shape[axis]
    existing = existing_shape(self, "batch_stats", "mean")
    if existing is not None and existing != (features,):
      hint = channels_first_hint(x.shape, existing[0]) if axis == x.ndim - 1 else ""
      raise ValueError(
          f"BatchNorm: expected {existing[0]} features on axis {self.axis} (channels "
          f"last; its statistics have shape {existing}), got input shape "
          f"{tuple(x.shape)} with {features}.{hint}")
    if existing is None and axis == x.ndim - 1 and looks_channels_first(x.shape):
      raise ValueError(
          f"BatchNorm: expected features on the last axis (channels last), got input "
          f"shape {tuple(x.shape)}, which reads as a channels-first image batch."
          f"{channels_first_hint(x.shape)}")
    reduction = tuple(a for a in range(x.ndim) if a != axis)
    stats_shape = (features,)

    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, stats_shape, jnp.float32)
    ra_var = self.variable("batch_stats", "var", jnp.ones, stats_shape, jnp.float32)

    if train:
      initializing = self.is_initializing()
      if not initializing and not self.is_mutable_collection("batch_stats"):
        raise ValueError(
            "BatchNorm(train=True) updates its running statistics: call "
            "apply(..., mutable=['batch_stats']) (or pass train=False to use them)")
      # During init no axis need be bound, as in Flax: statistics stay local.
      mean, var = batch_moments(
          x, reduction, None if initializing else self.axis_name, self.axis_index_groups)
      if not initializing:
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    else:
      mean, var = ra_mean.value, ra_var.value

    scale = bias = None
    if self.use_scale:
      scale = self.param("scale", self.scale_init, stats_shape, self.param_dtype)
    if self.use_bias:
      bias = self.param("bias", self.bias_init, stats_shape, self.param_dtype)
    dtype = canonicalize_dtype(*(a for a in (x, scale, bias) if a is not None), dtype=self.dtype)
    return _normalize(x, mean, var, scale, bias, axis=axis, epsilon=self.epsilon, dtype=dtype)


@functools.partial(jax.jit, static_argnames=("axis", "epsilon", "dtype"))
def _normalize(x: Array, mean: Array, var: Array, scale: Array | None, bias: Array | None, *,
               axis: int, epsilon: float, dtype: Any) -> Array:
  """``(x - mean) / sqrt(var + epsilon) * scale + bias`` along ``axis``, in ``dtype``.

  One jitted function, so that an eager call (``init``, ``apply`` outside
  ``jit``) runs one compiled program rather than one per operation; inside a
  traced function it is inlined.
  """
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  mul = lax.rsqrt(var + epsilon)
  if scale is not None:
    mul = mul * scale
  y = (x - mean.reshape(shape)) * mul.reshape(shape)
  if bias is not None:
    y = y + bias.reshape(shape)
  return jnp.asarray(y, dtype)
