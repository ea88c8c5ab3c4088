"""ResNeXt-50 (32x4d) and Wide ResNet-50-2: ResNet-50 with grouped or wider bottlenecks.

Xie et al., "Aggregated Residual Transformations for Deep Neural Networks"
(CVPR 2017); Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016),
as torchvision's ``resnext50_32x4d`` (25,028,904 parameters at 1000
classes) and ``wide_resnet50_2`` (68,883,240). Both are
``cnnjax.models.ResNet`` with a ``GroupedBottleneck``: same stem, stages,
names and options (``downsample``, ``padding``, ``stem='cifar'``, ...).
"""

from __future__ import annotations

import functools

from cnnjax.blocks.resnext import GroupedBottleneck
from cnnjax.models.registry import register
from cnnjax.models.resnet import ResNet

ResNeXt50 = register("resnext50_32x4d", input_shape=(32, 32, 3))(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                      block_cls=functools.partial(GroupedBottleneck, groups=32, base_width=4)))
WideResNet50 = register("wide_resnet50_2", input_shape=(32, 32, 3))(
    functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                      block_cls=functools.partial(GroupedBottleneck, base_width=128)))
