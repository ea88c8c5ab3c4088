"""Parameter initialisers that draw the numbers of ``jax.nn.initializers``, and compile faster.

``variance_scaling`` (and ``lecun_normal``), ``truncated_normal`` and
``normal`` return the same arrays, bit for bit, as their namesakes in
``jax.nn.initializers`` / ``flax.linen.initializers`` for the same key, shape
and dtype. The difference is how the random numbers are drawn: as one flat
vector of ``prod(shape)`` numbers, then reshaped.

Why: under JAX's default PRNG (partitionable threefry), a threefry draw of an
N-D shape computes each element's counter from N iotas, and XLA:CPU compiles
that several times slower than the same draw of a 1-D shape. ``model.init``
draws every kernel, so it was most of the compile time of
``create_train_state`` (LeNet-5: 2.3 s -> 0.9 s; ResNet-18-CIFAR: 4.7 s ->
2.1 s; BENCHMARKS.md section 26).

Why the numbers are the same: threefry gives element ``i`` of a draw from the
key and ``i``'s row-major position alone (both PRNG modes), so the
flat draw holds the shaped draw's numbers in row-major order; every transform
after the bits (uniform, ``erfinv``, clipping, the scale) is elementwise. For
keys of another implementation (``'rbg'``, whose bits come from XLA's
``RngBitGenerator`` and may depend on the shape on some backends) the draw
keeps its shape. The arithmetic after the draw is jax's own (its
``normal``/``truncated_normal`` initialisers). ``tests/layers/test_layers_initializers.py``
checks the equality in both threefry modes, for several ranks and dtypes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Shape = Sequence[int]
Initializer = Callable[..., Array]

__all__ = ["variance_scaling", "lecun_normal", "truncated_normal", "normal"]

# Standard deviation of a standard normal truncated to (-2, 2): jax's constant.
_TRUNCATED_STDDEV = .87962566103423978


def _draws_flat(key: Array, shape: tuple[int, ...], dtype: Any) -> bool:
  """Whether a flat draw gives the numbers of a draw of ``shape``: threefry keys, real dtypes."""
  return (len(shape) >= 2 and jnp.issubdtype(dtype, np.floating)
          and str(jax.random.key_impl(key)) == "threefry2x32")


def _flat(initializer: Initializer, key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
  """``initializer(key, shape, dtype)``, computed as a flat draw reshaped where that is equal."""
  if _draws_flat(key, shape, dtype):
    return jnp.reshape(initializer(key, (math.prod(shape),), dtype), shape)
  return initializer(key, shape, dtype)


def _float_dtype(dtype: Any) -> Any:
  """``dtype``, or JAX's default float dtype for ``None`` (as ``jax.nn.initializers``)."""
  return jax.dtypes.canonicalize_dtype(jnp.float_) if dtype is None else dtype


def _size(shape: tuple[int, ...], axis: int | Sequence[int]) -> int:
  return shape[axis] if isinstance(axis, int) else math.prod(shape[i] for i in axis)


def _fans(shape: tuple[int, ...], in_axis: int | Sequence[int], out_axis: int | Sequence[int],
          batch_axis: int | Sequence[int]) -> tuple[float, float]:
  """``(fan_in, fan_out)``, computed as ``jax.nn.initializers`` computes them (same floats)."""
  in_size, out_size = _size(shape, in_axis), _size(shape, out_axis)
  receptive = math.prod(shape) / in_size / out_size / _size(shape, batch_axis)
  return in_size * receptive, out_size * receptive


def variance_scaling(
    scale: float,
    mode: Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"],
    distribution: Literal["truncated_normal", "normal", "uniform"],
    in_axis: int | Sequence[int] = -2,
    out_axis: int | Sequence[int] = -1,
    batch_axis: int | Sequence[int] = (),
    dtype: Any = None,
) -> Initializer:
  """``jax.nn.initializers.variance_scaling``'s numbers; normal draws are drawn flat.

  Returns ``init(key, shape, dtype) -> Array`` of ``shape``: zero mean,
  variance ``scale / n`` with ``n`` the fan ``mode`` names (for a kernel
  ``(*kernel_size, C_in, C_out)``: ``fan_in = prod(kernel_size) * C_in``).

  The standard deviation is computed here, in ``dtype`` with NumPy as jax
  computes it, and the draw is jax's ``normal``/``truncated_normal``
  initialiser of that standard deviation over ``prod(shape)`` numbers: jax's
  own arithmetic, whatever its release. ``'uniform'`` (and complex dtypes) is
  jax's initialiser itself.
  """
  if mode not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
    raise ValueError(f"invalid mode for variance scaling initializer: {mode!r}; expected "
                     "'fan_in', 'fan_out', 'fan_avg' or 'fan_geo_avg'")
  if distribution not in ("truncated_normal", "normal", "uniform"):
    raise ValueError(f"invalid distribution for variance scaling initializer: {distribution!r}; "
                     "expected 'truncated_normal', 'normal' or 'uniform'")
  reference = jax.nn.initializers.variance_scaling(scale, mode, distribution, in_axis, out_axis,
                                                   batch_axis, dtype)

  def init(key: Array, shape: Shape, dtype: Any = dtype) -> Array:
    shape, dtype = tuple(int(d) for d in shape), _float_dtype(dtype)
    if distribution == "uniform" or not _draws_flat(key, shape, dtype):
      return reference(key, shape, dtype)
    fan_in, fan_out = _fans(shape, in_axis, out_axis, batch_axis)
    denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
                   "fan_geo_avg": (fan_in * fan_out) ** 0.5}[mode]
    # jax: variance = jnp.array(scale / denominator, dtype), and sqrt and the division below in
    # dtype; each is one correctly rounded operation, in NumPy as in XLA.
    stddev = np.sqrt(np.array(scale / denominator, dtype))
    if distribution == "truncated_normal":
      stddev = stddev / np.array(_TRUNCATED_STDDEV, dtype)
      draw = jax.nn.initializers.truncated_normal(float(stddev), dtype, -2.0, 2.0)
    else:
      draw = jax.nn.initializers.normal(float(stddev), dtype)
    return _flat(draw, key, shape, dtype)

  return init


def lecun_normal(in_axis: int | Sequence[int] = -2, out_axis: int | Sequence[int] = -1,
                 batch_axis: int | Sequence[int] = (), dtype: Any = None) -> Initializer:
  """LeCun normal (truncated at 2 standard deviations, variance ``1 / fan_in``): Flax's
  default kernel initialiser, ``flax.linen.initializers.lecun_normal()``'s numbers."""
  return variance_scaling(1.0, "fan_in", "truncated_normal", in_axis, out_axis, batch_axis, dtype)


def _drawn_flat(reference: Initializer, dtype: Any) -> Initializer:
  """``reference`` (a jax initialiser whose numbers are elementwise in its draw), drawn flat."""

  def init(key: Array, shape: Shape, dtype: Any = dtype) -> Array:
    return _flat(reference, key, tuple(int(d) for d in shape), _float_dtype(dtype))

  return init


def truncated_normal(stddev: float = 1e-2, dtype: Any = None, lower: float = -2.0,
                     upper: float = 2.0) -> Initializer:
  """``jax.nn.initializers.truncated_normal(stddev, dtype, lower, upper)``, drawn flat: a
  normal truncated to ``(lower, upper)``, then multiplied by ``stddev``."""
  return _drawn_flat(jax.nn.initializers.truncated_normal(stddev, dtype, lower, upper), dtype)


def normal(stddev: float = 1e-2, dtype: Any = None) -> Initializer:
  """``jax.nn.initializers.normal(stddev, dtype)``, drawn flat."""
  return _drawn_flat(jax.nn.initializers.normal(stddev, dtype), dtype)
