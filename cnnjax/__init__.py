"""cnnjax: convolutional networks in JAX and Flax.

Layers of the package, each importing only from the ones before it:
``ops`` (pure array functions) → ``layers`` (linen modules) → ``blocks`` →
``models``; ``data``; ``train``; ``inspect``; ``testing``.

``cnnjax.summary(model, input_shape)`` prints a table of a model's layers with
output shapes, parameters and multiply-accumulates.
"""

from cnnjax import blocks, data, inspect, layers, models, ops, testing, train
from cnnjax.inspect.summary import summary

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "blocks",
    "data",
    "inspect",
    "layers",
    "models",
    "ops",
    "summary",
    "testing",
    "train",
]
