"""Pure array functions: convolution (several formulations), pooling, arithmetic.

``ops.collectives`` holds ``pmean``/``psum`` that skip an axis of one device;
``ops.conv_fast`` the convolution formulations for shapes XLA:CPU is slow on;
``ops.lowering`` the policy that picks a formulation per backend and shape.

No parameters and no state: every function maps arrays to arrays, channels
last ``(N, *spatial, C)``, kernels ``(*spatial, C_in / groups, C_out)``.
"""

from cnnjax.ops import collectives, conv_fast, lowering
from cnnjax.ops.antialias import (
    binomial_filter,
    blur_pool,
    polyphase_components,
    polyphase_downsample,
)
from cnnjax.ops.arithmetic import (
    PADDING_MODES,
    ReceptiveField,
    conv_macs,
    conv_output_shape,
    conv_output_size,
    conv_param_count,
    conv_transpose_output_shape,
    dense_param_count,
    receptive_field,
    resolve_padding,
    same_padding,
)
from cnnjax.ops.conv import conv, conv_matmul, conv_reference, extract_patches
from cnnjax.ops.lowering import LOWERINGS, choose_lowering, default_lowering
from cnnjax.ops.pooling import avg_pool, global_avg_pool, global_max_pool, max_pool

__all__ = [
    "LOWERINGS",
    "PADDING_MODES",
    "ReceptiveField",
    "avg_pool",
    "binomial_filter",
    "blur_pool",
    "choose_lowering",
    "collectives",
    "conv",
    "conv_fast",
    "conv_macs",
    "conv_matmul",
    "conv_output_shape",
    "conv_output_size",
    "conv_param_count",
    "conv_reference",
    "conv_transpose_output_shape",
    "default_lowering",
    "dense_param_count",
    "extract_patches",
    "global_avg_pool",
    "global_max_pool",
    "lowering",
    "max_pool",
    "polyphase_components",
    "polyphase_downsample",
    "receptive_field",
    "resolve_padding",
    "same_padding",
]
