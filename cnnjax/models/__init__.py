"""The model zoo and its registry.

``create(name, **fields)`` builds a registered model (``names()`` lists
them); ``register(name)`` adds one. Every model maps ``(N, H, W, C)``
images (``(N, T)`` token ids for ``textcnn``) to float32 logits, takes
``train: bool`` in ``__call__``, sows its features as
``('intermediates', 'pre_logits')`` and ends in a Dense named ``head``.
``load_torch_state_dict(name, state_dict)`` converts torchvision weights;
``pretrained(name, path)`` builds a model and its variables from a local
``.pth``, ``.safetensors`` or cnnjax run directory.
"""

from cnnjax.models.alexnet import AlexNet
from cnnjax.models.convnext import ConvNeXt, ConvNeXtTiny
from cnnjax.models.densenet import DenseNet, DenseNet121
from cnnjax.models.efficientnet import EFFICIENTNET_B0_CONFIG, EfficientNet, EfficientNetB0
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
from cnnjax.models.resnext import ResNeXt50, WideResNet50
from cnnjax.models.textcnn import TextCNN
from cnnjax.models.torch_import import load_torch_state_dict
from cnnjax.models.unet import UNet
from cnnjax.models.vgg import VGG, VGG11, VGG11BN, VGG16, VGG16BN, VGG_CONFIGS
from cnnjax.models.wide_resnet import WRN28_10, WideResNet
from cnnjax.models.pretrained import pretrained, save_safetensors

__all__ = [
    "EFFICIENTNET_B0_CONFIG",
    "GOOGLENET_CONFIG",
    "MOBILENET_V2_CONFIG",
    "VGG",
    "VGG11",
    "VGG11BN",
    "VGG16",
    "VGG16BN",
    "VGG_CONFIGS",
    "WRN28_10",
    "AlexNet",
    "ConvNeXt",
    "ConvNeXtTiny",
    "DenseNet",
    "DenseNet121",
    "DigitsCNN",
    "EfficientNet",
    "EfficientNetB0",
    "GoogLeNet",
    "GoogLeNetSmall",
    "LeNet5",
    "MobileNetV2",
    "ModelSpec",
    "ResNeXt50",
    "ResNet",
    "ResNet18",
    "ResNet18Cifar",
    "ResNet34",
    "ResNet34Cifar",
    "ResNet50",
    "ResNet50Cifar",
    "TextCNN",
    "UNet",
    "WideResNet",
    "WideResNet50",
    "create",
    "load_torch_state_dict",
    "make_divisible",
    "names",
    "pretrained",
    "register",
    "save_safetensors",
    "spec",
]
