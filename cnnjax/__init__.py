"""cnnjax: convolutional networks in JAX and Flax.

Layers of the package, each importing only from the ones before it:
``ops`` (pure array functions) → ``layers`` (linen modules) → ``blocks`` →
``models``; ``data``; ``train``; ``inspect``; ``testing``.
"""

from cnnjax import ops

__version__ = "0.1.0"

__all__ = ["ops", "__version__"]
