"""Shift-robust downsampling layers: ``BlurPool``, ``MaxBlurPool``, ``PolyphaseDownsample``.

Parameter-free linen modules over ``cnnjax.ops.antialias``, channels last
``(N, *spatial, C)`` with 1, 2 or 3 spatial axes (``MaxBlurPool``: as many
axes as its ``window_shape``). Blocks and models take them as their
``downsample`` module in place of a stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax

from cnnjax.layers._checks import check_layer_input
from cnnjax.ops import antialias
from cnnjax.ops import pooling
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


def _rank(layer: str, x) -> int:
  if not hasattr(x, "ndim"):
    raise TypeError(f"{layer}: input must be an array, got {type(x).__name__}")
  rank = x.ndim - 2
  if rank not in (1, 2, 3):
    raise ValueError(
        f"{layer}: expected (N, *spatial, C) input with 1, 2 or 3 spatial axes, "
        f"channels last (NWC, NHWC or NDHWC), got shape {tuple(x.shape)} (rank {x.ndim})")
  check_layer_input(layer, x, rank)
  return rank


class BlurPool(nn.Module):
  """Anti-aliased downsampling: binomial blur per channel, then subsampling.

  From Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"
  (ICML): low-pass filtering before subsampling reduces the aliasing that
  makes strided layers sensitive to one-pixel shifts. Replace a strided
  convolution ``Conv(strides=2)`` by ``Conv(strides=1)`` then ``BlurPool()``,
  and a strided max-pool by ``MaxBlurPool``.

  Attributes:
    filter_size: binomial taps per axis, 1 to 7 (3 is Zhang's "Tri-3",
      5 "Bin-5"); see ``ops.binomial_filter``.
    strides: subsampling factor, an int or one per spatial axis.
    padding: ``'REFLECT'`` (Zhang's choice), ``'CIRCULAR'`` (for circular
      networks), ``'SAME'`` (zeros) or ``'VALID'``.

  Input ``(N, *spatial, C)``, output ``(N, *ceil(spatial / strides), C)``
  (``'VALID'``: ``floor((n - filter_size) / s) + 1``).
  """

  filter_size: int = 3
  strides: int | Sequence[int] = 2
  padding: PaddingLike = "REFLECT"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    _rank("BlurPool", x)
    return antialias.blur_pool(x, self.filter_size, self.strides, self.padding)


class MaxBlurPool(nn.Module):
  """Anti-aliased max pooling: a dense (stride 1) max-pool, then ``BlurPool``.

  Zhang 2019 ("Making Convolutional Networks Shift-Invariant Again") splits
  ``MaxPool(k, stride=s)`` into ``MaxPool(k, stride=1)``, whose dense max is
  shift-equivariant, and ``BlurPool(stride=s)``, which subsamples after a
  low-pass filter.

  Attributes:
    window_shape: the max-pool window, one entry per spatial axis.
    filter_size: binomial taps of the blur, 1 to 7.
    strides: subsampling factor of the blur.
    pool_padding: padding of the stride-1 max-pool: ``'SAME'`` (with -inf, the
      size is kept), ``'CIRCULAR'`` or ``'VALID'`` (as PyTorch's
      ``MaxPool2d(2, stride=1)`` in Zhang's code: each axis shrinks by k - 1).
    padding: padding of the blur (see ``BlurPool``).

  Input ``(N, *spatial, C)``; with ``'SAME'``/``'CIRCULAR'`` pool padding the
  output is ``(N, *ceil(spatial / strides), C)``.
  """

  window_shape: Sequence[int] = (2, 2)
  filter_size: int = 3
  strides: int | Sequence[int] = 2
  pool_padding: PaddingLike = "SAME"
  padding: PaddingLike = "REFLECT"

  @nn.compact
  def __call__(self, x: Array) -> Array:
    window = tuple(self.window_shape)
    rank = _rank("MaxBlurPool", x)
    if len(window) != rank:
      raise ValueError(
          f"MaxBlurPool: window_shape {window} has {len(window)} axes but the input "
          f"{tuple(x.shape)} has {rank} spatial axes (channels last)")
    y = pooling.max_pool(x, window, strides=1, padding=self.pool_padding)
    return antialias.blur_pool(y, self.filter_size, self.strides, self.padding)


class PolyphaseDownsample(nn.Module):
  """Adaptive polyphase sampling (APS): keep the polyphase component of largest norm.

  From Chaman & Dokmanić 2021, "Truly Shift-Invariant Convolutional Neural
  Networks" (CVPR). Where a stride would keep component 0, APS keeps, per
  example, the component with the largest ``l_p`` norm. A circular shift of
  the input then shifts the output circularly, so a network of circular
  convolutions, pointwise nonlinearities, APS layers and a global pool is
  exactly invariant to circular shifts of any size (not only multiples of the
  total stride).

  The index of the kept component, ``(N,)``, is sown in the
  ``'intermediates'`` collection as ``'index'``. ``__call__(x, index)`` keeps
  the given components instead: a residual block passes the index of its
  main path to its shortcut so that both keep the same phase (with two
  independent choices the sum is no longer a shift of the unshifted sum).

  Attributes:
    strides: subsampling factor, an int or one per spatial axis; each spatial
      size of the input must be divisible by it.
    p: order of the norm (the paper uses 2; ``jnp.inf`` allowed).

  Input ``(N, *spatial, C)``, output ``(N, *(spatial // strides), C)``.
  """

  strides: int | Sequence[int] = 2
  p: float = 2

  @nn.compact
  def __call__(self, x: Array, index: Array | None = None) -> Array:
    return self.with_index(x, index)[0]

  def with_index(self, x: Array, index: Array | None = None) -> tuple[Array, Array]:
    """Like ``__call__``, also returning the kept component's index ``(N,)``."""
    _rank("PolyphaseDownsample", x)
    y, index = antialias.polyphase_downsample(x, self.strides, self.p, index)
    self.sow("intermediates", "index", index)
    return y, index
