"""Data augmentation as pure JAX functions: ``f(key, image) -> image``, on device.

Every per-example augmentation takes a PRNG key and ONE image ``(H, W, C)``
of a floating dtype, returns an image of the same shape and dtype (except the
crops, which return their ``size``), and jits and vmaps; ``batch_augment(fn)``
applies one to a batch ``(N, H, W, C)`` with a key per example. Parameter
ranges follow torchvision (``degrees=(lo, hi)``, ``scale=(0.08, 1.0)``...).
The functions do not assume a value range: the loaders hand out normalised
images, so nothing is clipped to ``[0, 1]`` (hue is rotated in YIQ space, a
linear map, and salt-and-pepper uses the image's own min and max).

``mixup`` and ``cutmix`` mix examples, so they act on a batch and its one-hot
labels and return soft labels.

Class maps (segmentation): ``with_segmentation(fn)`` applies a built
augmentation to ``(image, (H, W) class map)``, moving the map with the same
geometry (nearest neighbour) for the augmentations in ``GEOMETRIC`` and
leaving it for photometric ones; ``cutmix_segmentation`` pastes the same box
into both; mixup is refused for class maps.

Config spec (``build``): one string of comma-separated calls::

    augment.build('random_crop(padding=2), horizontal_flip')
    augment.build('random_crop(padding=4, pad_mode="reflect"), rotate(degrees=10), blur(kernel_size=3)')

Names are the functions below (``random_crop``, ``horizontal_flip``,
``vertical_flip``, ``rotate``, ``random_resized_crop``, ``gaussian_blur``,
``random_erasing``, ``color_jitter``, ``salt_and_pepper``) or the short
aliases ``crop``, ``flip``, ``vflip``, ``blur``, ``erase``, ``jitter``. Values
are Python literals. ``size`` left out means the input's size. An empty spec
is the identity.

Three modules, each with its own tests: ``ops_image`` (the per-example
functions), ``mixing`` (mixup, CutMix), ``builder`` (combinators, the registry
and the spec, class maps); everything is importable from here.
"""

from cnnjax.data.augment.builder import (
    ALIASES,
    GEOMETRIC,
    REGISTRY,
    Compose,
    RandomApply,
    RandomChoice,
    batch_augment,
    build,
    with_segmentation,
)
from cnnjax.data.augment.mixing import cutmix, cutmix_segmentation, mixup
from cnnjax.data.augment.ops_image import (
    Augmentation,
    color_jitter,
    gaussian_blur,
    gaussian_kernel1d,
    horizontal_flip,
    identity,
    random_crop,
    random_erasing,
    random_resized_crop,
    rotate,
    salt_and_pepper,
    vertical_flip,
)

__all__ = [
    "ALIASES", "GEOMETRIC", "REGISTRY", "Augmentation", "Compose", "RandomApply", "RandomChoice",
    "batch_augment", "build", "color_jitter", "cutmix", "cutmix_segmentation", "gaussian_blur",
    "gaussian_kernel1d", "horizontal_flip", "identity", "mixup", "random_crop", "random_erasing",
    "random_resized_crop", "rotate", "salt_and_pepper", "vertical_flip", "with_segmentation",
]
