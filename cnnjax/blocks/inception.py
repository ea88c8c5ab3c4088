"""The Inception block: four parallel branches concatenated on channels.

Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015), figure 2(b),
with the factorisations of Szegedy et al., "Rethinking the Inception
Architecture for Computer Vision" (CVPR 2016) as options:

* ``factorize_5x5``: a 5x5 convolution becomes two 3x3 (figure 5). For equal
  channels that is ``2 * 9 = 18`` weights per input-output pair instead of
  ``25``, with the same 5x5 receptive field.
* ``asymmetric``: every n x n convolution (n > 1) becomes a 1 x n then an
  n x 1 (figure 6): ``2n`` weights instead of ``n^2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.blocks.common import Activation, ConvNormAct, ModuleDef, check_image
from cnnjax.ops.arithmetic import PaddingLike

Array = jax.Array


class InceptionBlock(nn.Module):
  """Inception module: 1x1 | 1x1 → 3x3 | 1x1 → 5x5 | 3x3 max-pool → 1x1.

  ``(N, H, W, C) -> (N, H, W, features_1x1 + features_3x3 + features_5x5 +
  features_pool)``, branches concatenated in that order. Every convolution
  is ``conv → norm → act`` (``ConvNormAct``); with ``norm=None`` and a biased
  ``conv`` it is the original GoogLeNet block, whose parameters are, per
  reduced branch, ``(C_in + 1) * C_mid + (C_mid * K * K + 1) * C_out``.

  Submodules (``ConvNormAct``): ``branch1x1``; ``branch3x3_reduce``,
  ``branch3x3`` (or ``branch3x3_1xn``, ``branch3x3_nx1``); ``branch5x5_reduce``,
  ``branch5x5`` (or ``branch5x5_a``, ``branch5x5_b`` when factorised, each
  possibly split into ``_1xn``/``_nx1``); ``branch_pool``.

  Attributes:
    features_1x1: channels of the 1x1 branch.
    features_3x3_reduce: channels of the 1x1 before the 3x3.
    features_3x3: channels of the 3x3 branch.
    features_5x5_reduce: channels of the 1x1 before the 5x5.
    features_5x5: channels of the 5x5 branch (and of the first 3x3 when
      factorised, as in Inception-v3).
    features_pool: channels of the 1x1 after the max-pool.
    conv: convolution factory.
    norm: norm factory, or None.
    act: nonlinearity.
    factorize_5x5: replace the 5x5 by two 3x3.
    asymmetric: replace each n x n (n > 1) by 1 x n then n x 1.
    pool_window: window of the max-pool branch (stride 1, ``'SAME'``).
    padding: ``None`` for symmetric ``k // 2`` zero padding, or a padding
      for every convolution (e.g. ``'CIRCULAR'``).
  """

  features_1x1: int
  features_3x3_reduce: int
  features_3x3: int
  features_5x5_reduce: int
  features_5x5: int
  features_pool: int
  conv: ModuleDef
  norm: ModuleDef | None = None
  act: Activation = nn.relu
  factorize_5x5: bool = False
  asymmetric: bool = False
  pool_window: int = 3
  padding: PaddingLike | None = None

  def _conv(self, x: Array, features: int, k: int, name: str, train: bool) -> Array:
    """A k x k ConvNormAct, or 1 x k then k x 1 when ``asymmetric``."""
    make = lambda kernel, n: ConvNormAct(  # noqa: E731
        features, kernel, conv=self.conv, norm=self.norm, act=self.act,
        padding=self.padding, name=n)
    if self.asymmetric and k > 1:
      x = make((1, k), f"{name}_1xn")(x, train)
      return make((k, 1), f"{name}_nx1")(x, train)
    return make((k, k), name)(x, train)

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    b1 = self._conv(x, self.features_1x1, 1, "branch1x1", train)
    b3 = self._conv(x, self.features_3x3_reduce, 1, "branch3x3_reduce", train)
    b3 = self._conv(b3, self.features_3x3, 3, "branch3x3", train)
    b5 = self._conv(x, self.features_5x5_reduce, 1, "branch5x5_reduce", train)
    if self.factorize_5x5:
      b5 = self._conv(b5, self.features_5x5, 3, "branch5x5_a", train)
      b5 = self._conv(b5, self.features_5x5, 3, "branch5x5_b", train)
    else:
      b5 = self._conv(b5, self.features_5x5, 5, "branch5x5", train)
    window = (self.pool_window,) * 2
    pool_padding = "SAME" if self.padding is None else self.padding
    bp = ops.max_pool(x, window, (1, 1), pool_padding)
    bp = self._conv(bp, self.features_pool, 1, "branch_pool", train)
    return jnp.concatenate([b1, b3, b5, bp], axis=-1)

  @property
  def out_features(self) -> int:
    """Channels of the output."""
    return self.features_1x1 + self.features_3x3 + self.features_5x5 + self.features_pool


def inception_config(values: Sequence[int]) -> dict[str, int]:
  """Maps the six numbers of a row of GoogLeNet's table 1 to ``InceptionBlock`` fields.

  ``(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)``.
  """
  if len(values) != 6:
    raise ValueError(
        f"an inception row has 6 numbers (#1x1, #3x3 reduce, #3x3, #5x5 reduce, "
        f"#5x5, pool proj), got {len(values)}: {tuple(values)}")
  keys = ("features_1x1", "features_3x3_reduce", "features_3x3",
          "features_5x5_reduce", "features_5x5", "features_pool")
  return dict(zip(keys, values))
