"""Adaptive average pooling, PyTorch's ``AdaptiveAvgPool2d``, channels last.

Output bin ``i`` of an axis of ``n`` inputs and ``m`` outputs averages the
inputs ``floor(i * n / m) <= j < ceil((i + 1) * n / m)``, exactly as
torchvision's AlexNet (6x6) and VGG (7x7) use it; bins may overlap or repeat
(a 1x1 input becomes 7x7 copies). Rectangular bins make the average
separable: one ``(m, n)`` averaging matrix per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.blocks.common import check_image, pair

Array = jax.Array


def adaptive_pool_matrix(n: int, m: int) -> np.ndarray:
  """The ``(m, n)`` matrix averaging ``n`` inputs into ``m`` PyTorch adaptive bins."""
  if n < 1 or m < 1:
    raise ValueError(f"adaptive pooling needs positive sizes, got input {n} and output {m}")
  mat = np.zeros((m, n), np.float32)
  for i in range(m):
    lo, hi = (i * n) // m, -(-((i + 1) * n) // m)
    mat[i, lo:hi] = 1.0 / (hi - lo)
  return mat


def adaptive_avg_pool(x: Array, output_size: int | Sequence[int]) -> Array:
  """``(N, H, W, C) -> (N, out_h, out_w, C)``, PyTorch's adaptive average pooling.

  When ``H`` and ``W`` are multiples of the output it is a plain average
  pooling with window ``H / out_h``; otherwise bins follow PyTorch's rule.
  """
  check_image(x, "adaptive_avg_pool")
  out_h, out_w = pair(output_size)
  n, h, w, c = x.shape
  if h % out_h == 0 and w % out_w == 0:
    return x.reshape(n, out_h, h // out_h, out_w, w // out_w, c).mean(axis=(2, 4))
  mh = jnp.asarray(adaptive_pool_matrix(h, out_h), x.dtype)
  mw = jnp.asarray(adaptive_pool_matrix(w, out_w), x.dtype)
  return jnp.einsum("nhwc,ih,jw->nijc", x, mh, mw)


class AdaptiveAvgPool(nn.Module):
  """Adaptive average pooling to a fixed ``output_size`` (PyTorch's ``AdaptiveAvgPool2d``).

  Attributes:
    output_size: int or ``(out_h, out_w)``.
  """

  output_size: int | Sequence[int]

  @nn.compact
  def __call__(self, x: Array) -> Array:
    """``(N, H, W, C) -> (N, out_h, out_w, C)``."""
    return adaptive_avg_pool(x, self.output_size)
