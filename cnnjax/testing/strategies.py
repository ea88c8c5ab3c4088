"""Hypothesis strategies for property tests of convolutional code.

* ``images``: random feature maps ``(N, *spatial, C)``.
* ``shifts``: a shift per spatial axis, a multiple of a stride.
* ``conv_configs``: convolution hyperparameters (kernel, stride, dilation,
  groups, padding, channels) as a ``ConvConfig`` that builds both an
  ``ops.conv`` call and a ``cnnjax.layers.Conv``.

Array values come from ``numpy.random.default_rng(seed)`` with a drawn seed:
hypothesis explores shapes and seeds, and a failing example is reproduced
from its seed. Shapes and values are small by default, so that every example
runs in milliseconds.

Sizes come from a few buckets of each range (``buckets=3``: its low end,
middle and high end), not every integer in it: a jitted function compiles
once per shape, so a property test, and above all the shrinking of a failing
one, compiles a handful of times instead of once per example.
``buckets=None`` draws every size in the range.

Example::

  from hypothesis import given, strategies as st
  from cnnjax.testing import strategies as cst

  @given(cst.images(spatial=(6, 10)).flatmap(
      lambda x: st.tuples(st.just(x), cst.shifts(x.shape[1:-1]))))
  def test_relu_commutes_with_shifts(args):
    x, shift = args
    assert_shift_equivariant(jax.nn.relu, x, shift)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
  from hypothesis import strategies as st
except ModuleNotFoundError as e:
  if e.name != "hypothesis":
    raise
  raise ImportError(
      "cnnjax.testing.strategies needs hypothesis: pip install 'cnnjax[testing]' "
      "(the assertions of cnnjax.testing work without it)", name=e.name) from None

from cnnjax.ops import arithmetic, validation

IntRange = int | tuple[int, int]


def _range(value: IntRange, name: str, minimum: int = 1) -> tuple[int, int]:
  """``value`` as an inclusive ``(lo, hi)`` range of ints."""
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    value = (int(value), int(value))
  value = tuple(value)
  if len(value) != 2 or not all(isinstance(v, (int, np.integer)) for v in value) or not minimum <= value[0] <= value[1]:
    raise ValueError(f"{name} must be an int or an inclusive (lo, hi) range with {minimum} <= lo <= hi, got {value!r}")
  return int(value[0]), int(value[1])


def _sizes(lo: int, hi: int, buckets: int | None) -> st.SearchStrategy[int]:
  """Ints in ``[lo, hi]``: ``buckets`` evenly spaced ones (lowest first, where shrinking goes) or all."""
  if buckets is None:
    return st.integers(lo, hi)
  if not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1:
    raise ValueError(f"buckets must be a positive int or None, got {buckets!r}")
  return st.sampled_from(sorted({int(v) for v in np.linspace(lo, hi, buckets).round()}))


def images(
    rank: int = 2,
    batch: IntRange = (1, 3),
    spatial: IntRange = (4, 12),
    channels: IntRange = (1, 4),
    dtype: Any = np.float32,
    *,
    multiple_of: int | Sequence[int] = 1,
    scale: float = 1.0,
    buckets: int | None = 3,
) -> st.SearchStrategy[np.ndarray]:
  """Random feature maps ``(N, *spatial, C)``, channels last.

  Args:
    rank: number of spatial axes (1, 2 or 3).
    batch, spatial, channels: an int or an inclusive ``(lo, hi)`` range; each
      spatial axis is drawn on its own.
    dtype: a floating numpy dtype (``jnp.bfloat16`` works too).
    multiple_of: every spatial size is rounded up to a multiple of it (an int
      or one per axis), e.g. the total stride of a network under test.
    scale: standard deviation of the normally distributed values.
    buckets: how many sizes of each range are drawn (evenly spaced, ends
      included); ``None`` for every size.

  Returns:
    A strategy of numpy arrays of shape ``(N, *spatial, C)`` and ``dtype``.

  Raises:
    ValueError: at construction, for a bad rank or range.
  """
  if rank not in (1, 2, 3):
    raise ValueError(f"rank must be 1, 2 or 3 spatial axes, got {rank!r}")
  n_lo, n_hi = _range(batch, "batch")
  s_lo, s_hi = _range(spatial, "spatial")
  c_lo, c_hi = _range(channels, "channels")
  multiple = validation.as_tuple(multiple_of, rank, "multiple_of")

  n_sizes, s_sizes, c_sizes = (_sizes(n_lo, n_hi, buckets), _sizes(s_lo, s_hi, buckets),
                               _sizes(c_lo, c_hi, buckets))

  @st.composite
  def draw_images(draw: Any) -> np.ndarray:
    n = draw(n_sizes)
    sizes = tuple(-(-draw(s_sizes) // m) * m for m in multiple)
    c = draw(c_sizes)
    seed = draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).standard_normal((n, *sizes, c)) * scale
    return values.astype(dtype)

  return draw_images()


def shifts(
    shape: Sequence[int], stride: int | Sequence[int] = 1, *, max_shift: int | None = None
) -> st.SearchStrategy[tuple[int, ...]]:
  """One shift per spatial axis, each a multiple of the stride.

  Args:
    shape: the spatial shape, e.g. ``x.shape[1:-1]`` of an ``(N, *spatial, C)``.
    stride: an int or one per axis; every shift is a multiple of it.
    max_shift: the largest absolute shift; default ``n - 1`` on an axis of
      size ``n`` (every distinct circular shift, both directions).

  Returns:
    A strategy of int tuples ``(t_1, ..., t_rank)`` with ``|t_a| <= max_shift``.
  """
  shape = tuple(int(n) for n in shape)
  if not shape or min(shape) < 1:
    raise ValueError(f"shape must be the spatial shape (positive sizes, e.g. x.shape[1:-1]), got {shape!r}")
  stride = validation.as_tuple(stride, len(shape), "stride")
  parts = []
  for n, s in zip(shape, stride):
    limit = n - 1 if max_shift is None else min(int(max_shift), n - 1)
    k = limit // s
    parts.append(st.integers(-k, k).map(lambda i, s=s: i * s))
  return st.tuples(*parts)


@dataclasses.dataclass(frozen=True)
class ConvConfig:
  """Hyperparameters of one convolution, drawn by ``conv_configs``.

  Attributes:
    kernel_size: spatial kernel shape, one int per axis.
    strides: stride per axis.
    kernel_dilation: kernel (atrous) dilation per axis.
    feature_group_count: groups; divides both channel counts.
    padding: a padding string of ``ops.conv`` (``'CIRCULAR'``, ``'SAME'``, ...).
    in_features: input channels ``C_in``.
    features: output channels ``C_out``.
  """

  kernel_size: tuple[int, ...]
  strides: tuple[int, ...]
  kernel_dilation: tuple[int, ...]
  feature_group_count: int
  padding: str
  in_features: int
  features: int

  @property
  def rank(self) -> int:
    """Number of spatial axes."""
    return len(self.kernel_size)

  @property
  def kernel_shape(self) -> tuple[int, ...]:
    """``(*kernel_size, C_in / groups, C_out)``, the ``ops.conv`` kernel (HWIO)."""
    return (*self.kernel_size, self.in_features // self.feature_group_count, self.features)

  @property
  def effective_kernel(self) -> tuple[int, ...]:
    """Kernel extent after dilation, ``(k - 1) * d + 1`` per axis."""
    return tuple(arithmetic.dilated_size(k, d) for k, d in zip(self.kernel_size, self.kernel_dilation))

  def init(self, seed: int = 0, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Random ``(kernel, bias)`` of the shapes ``ops.conv`` expects, from ``seed``."""
    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(self.kernel_shape[:-1]))
    kernel = rng.standard_normal(self.kernel_shape) / np.sqrt(fan_in)
    bias = rng.standard_normal((self.features,)) * 0.1
    return kernel.astype(dtype), bias.astype(dtype)

  def op_kwargs(self) -> dict[str, Any]:
    """Keyword arguments of ``ops.conv``: ``strides``, ``padding``, ``rhs_dilation``, ``feature_group_count``."""
    return dict(strides=self.strides, padding=self.padding, rhs_dilation=self.kernel_dilation,
                feature_group_count=self.feature_group_count)

  def layer_kwargs(self) -> dict[str, Any]:
    """Fields of ``cnnjax.layers.Conv`` (the ``flax.linen.Conv`` names)."""
    return dict(features=self.features, kernel_size=self.kernel_size, strides=self.strides,
                padding=self.padding, kernel_dilation=self.kernel_dilation,
                feature_group_count=self.feature_group_count)


def conv_configs(
    rank: int = 2,
    *,
    kernel_size: IntRange = (1, 4),
    strides: IntRange = 1,
    dilation: IntRange = (1, 2),
    groups: IntRange = (1, 3),
    channels_per_group: IntRange = (1, 2),
    paddings: Sequence[str] = ("CIRCULAR",),
    buckets: int | None = 3,
) -> st.SearchStrategy[ConvConfig]:
  """Convolution hyperparameters: kernel, stride, dilation, groups, padding, channels.

  Sizes are drawn per spatial axis, so kernels can be rectangular. The channel
  counts are ``groups * channels_per_group`` (input and output drawn apart),
  so every config is valid; ``groups`` equal to the input channels gives a
  depthwise convolution.

  Args:
    rank: number of spatial axes (1, 2 or 3).
    kernel_size, strides, dilation, groups, channels_per_group: an int or an
      inclusive ``(lo, hi)`` range.
    paddings: the padding strings to draw from, e.g. ``('CIRCULAR', 'SAME')``.
    buckets: how many values of the ``channels_per_group`` range are drawn
      (evenly spaced, ends included); ``None`` for every value. Kernel sizes
      are all drawn: odd and even kernels pad differently.

  Returns:
    A strategy of ``ConvConfig``. Draw inputs of at least
    ``config.effective_kernel`` per axis (and of ``config.in_features``
    channels), e.g. ``images(channels=config.in_features, ...)``.

  Raises:
    ValueError: at construction, for a bad rank, range or padding.
  """
  if rank not in (1, 2, 3):
    raise ValueError(f"rank must be 1, 2 or 3 spatial axes, got {rank!r}")
  paddings = tuple(paddings)
  for p in paddings:
    if not isinstance(p, str) or p.upper() not in arithmetic.PADDING_MODES:
      raise ValueError(f"paddings must be drawn from {arithmetic.PADDING_MODES}, got {p!r}")
  allowed = [p for p in paddings if p.upper() != "CAUSAL" or rank == 1]
  if not allowed:
    raise ValueError(f"paddings {paddings!r} leave nothing to draw for rank {rank} ('CAUSAL' is 1-D only)")
  k_lo, k_hi = _range(kernel_size, "kernel_size")
  s_lo, s_hi = _range(strides, "strides")
  d_lo, d_hi = _range(dilation, "dilation")
  g_lo, g_hi = _range(groups, "groups")
  c_lo, c_hi = _range(channels_per_group, "channels_per_group")
  k_sizes, c_sizes = st.integers(k_lo, k_hi), _sizes(c_lo, c_hi, buckets)

  @st.composite
  def draw_config(draw: Any) -> ConvConfig:
    kernel = tuple(draw(k_sizes) for _ in range(rank))
    stride = tuple(draw(st.integers(s_lo, s_hi)) for _ in range(rank))
    dil = tuple(draw(st.integers(d_lo, d_hi)) for _ in range(rank))
    g = draw(st.integers(g_lo, g_hi))
    padding = draw(st.sampled_from(allowed))
    return ConvConfig(
        kernel_size=kernel, strides=stride, kernel_dilation=dil, feature_group_count=g,
        padding=padding, in_features=g * draw(c_sizes), features=g * draw(c_sizes))

  return draw_config()
