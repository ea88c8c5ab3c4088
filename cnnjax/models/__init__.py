"""The model zoo and its registry.

``create(name, **fields)`` builds a registered model (``names()`` lists
them); ``register(name)`` adds one. Every model maps ``(N, H, W, C)``
images (``(N, T)`` token ids for ``textcnn``) to float32 logits, takes
``train: bool`` in ``__call__``, sows its features as
``('intermediates', 'pre_logits')`` and ends in a Dense named ``head``.
``load_torch_state_dict(name, state_dict)`` converts torchvision weights.
"""

from cnnjax.models.alexnet import AlexNet
from cnnjax.models.inception import GOOGLENET_CONFIG, GoogLeNet, GoogLeNetSmall
from cnnjax.models.lenet import DigitsCNN, LeNet5
from cnnjax.models.mobilenet import MOBILENET_V2_CONFIG, MobileNetV2, make_divisible
from cnnjax.models.registry import ModelSpec, create, names, register, spec
from cnnjax.models.resnet import (
    ResNet,
    ResNet18,
    ResNet18Cifar,
    ResNet34,
    ResNet34Cifar,
    ResNet50,
    ResNet50Cifar,
)
from cnnjax.models.textcnn import TextCNN
from cnnjax.models.torch_import import load_torch_state_dict
from cnnjax.models.unet import UNet
from cnnjax.models.vgg import VGG, VGG11, VGG11BN, VGG16, VGG16BN, VGG_CONFIGS

__all__ = [
    "GOOGLENET_CONFIG",
    "MOBILENET_V2_CONFIG",
    "VGG",
    "VGG11",
    "VGG11BN",
    "VGG16",
    "VGG16BN",
    "VGG_CONFIGS",
    "AlexNet",
    "DigitsCNN",
    "GoogLeNet",
    "GoogLeNetSmall",
    "LeNet5",
    "MobileNetV2",
    "ModelSpec",
    "ResNet",
    "ResNet18",
    "ResNet18Cifar",
    "ResNet34",
    "ResNet34Cifar",
    "ResNet50",
    "ResNet50Cifar",
    "TextCNN",
    "UNet",
    "create",
    "load_torch_state_dict",
    "make_divisible",
    "names",
    "register",
    "spec",
]
