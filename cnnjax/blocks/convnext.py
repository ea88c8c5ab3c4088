"""ConvNeXt's residual block: depthwise 7x7, LayerNorm, inverted MLP, layer scale, stochastic depth.

Liu et al., "A ConvNet for the 2020s" (CVPR 2022), in torchvision's form
(``CNBlock``). The two linear layers of the MLP are 1x1 convolutions of the
block's ``conv`` factory (the same arithmetic as PyTorch's ``nn.Linear`` on
channels-last maps, and they take the model's dtypes with the factory).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.blocks.common import Activation, ModuleDef, apply_norm, check_image, make_norm, pair
from cnnjax.layers.regularization import DropPath, LayerScale

Array = jax.Array
Dtype = Any

#: PyTorch's ``nn.GELU()`` is the exact (erf) form; Flax's default is the tanh approximation.
gelu_exact = functools.partial(nn.gelu, approximate=False)


class ConvNeXtBlock(nn.Module):
  """``x + drop_path(gamma * pw2(act(pw1(norm(dwconv7x7(x))))))``, shape-preserving.

  ``(N, H, W, C) -> (N, H, W, C)``. The depthwise convolution has
  ``feature_group_count = C`` and a bias; the MLP expands to
  ``mlp_ratio * C`` channels.

  Submodules: ``depthwise``, ``norm``, ``pwconv1``, ``pwconv2``,
  ``layer_scale`` (when ``layer_scale_init`` is not None), ``drop_path``.

  Attributes:
    conv: convolution factory (with a bias: ``partial(layers.Conv, use_bias=True)``).
    norm: channels-last norm factory (``partial(nn.LayerNorm, epsilon=1e-6)``).
    act: nonlinearity of the MLP (exact GELU).
    kernel_size: depthwise kernel (7).
    mlp_ratio: hidden channels per input channel (4).
    layer_scale_init: initial layer scale (1e-6), or None for none.
    drop_path_rate: stochastic depth probability of this block.
    param_dtype: dtype of the layer scale (the convolutions take theirs from ``conv``).
  """

  conv: ModuleDef
  norm: ModuleDef | None
  act: Activation = gelu_exact
  kernel_size: int | Sequence[int] = 7
  mlp_ratio: int = 4
  layer_scale_init: float | None = 1e-6
  drop_path_rate: float = 0.0
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = True) -> Array:
    """Applies the block to ``(N, H, W, C)``."""
    check_image(x, type(self).__name__)
    channels = x.shape[-1]
    kernel = pair(self.kernel_size)
    none = ((0, 0), (0, 0))
    y = self.conv(channels, kernel, padding=tuple((k // 2, (k - 1) // 2) for k in kernel),
                  feature_group_count=channels, name="depthwise")(x)
    y = apply_norm(make_norm(self.norm, "norm"), y, train)
    y = self.act(self.conv(self.mlp_ratio * channels, (1, 1), padding=none, name="pwconv1")(y))
    y = self.conv(channels, (1, 1), padding=none, name="pwconv2")(y)
    if self.layer_scale_init is not None:
      y = LayerScale(self.layer_scale_init, dtype=y.dtype, param_dtype=self.param_dtype,
                     name="layer_scale")(y)
    y = DropPath(self.drop_path_rate, name="drop_path")(y, train)
    return x + y.astype(x.dtype)
