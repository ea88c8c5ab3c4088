"""cnnjax: convolutional networks in JAX and Flax.

Layers of the package, each importing only from the ones before it:
``ops`` (pure array functions) → ``layers`` (linen modules) → ``blocks`` →
``models``; ``data``; ``train``; ``inspect``; ``testing``.

``cnnjax.summary(model, input_shape)`` prints a table of a model's layers with
output shapes, parameters and multiply-accumulates.

Subpackages are imported on first use (PEP 562), so ``import cnnjax`` and
``from cnnjax import ops`` (or ``layers``, ``blocks``, ``models``,
``testing``) load JAX and Flax only: TFDS, Grain, orbax, OpenCV, matplotlib,
scikit-learn and tqdm come with ``cnnjax.data``, ``cnnjax.train`` and
``cnnjax.inspect``, when those are used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from cnnjax import blocks, data, inspect, layers, models, ops, testing, train
  from cnnjax.inspect.summary import summary

__version__ = "0.1.0"

_SUBPACKAGES = ("blocks", "data", "inspect", "layers", "models", "ops", "testing", "train")

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


def __getattr__(name: str) -> Any:
  if name in _SUBPACKAGES:
    return importlib.import_module(f"cnnjax.{name}")
  if name == "summary":
    return importlib.import_module("cnnjax.inspect.summary").summary
  raise AttributeError(f"module 'cnnjax' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(__all__)
