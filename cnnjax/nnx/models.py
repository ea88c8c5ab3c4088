"""The model zoo for Flax NNX: ``create(name, *, rngs, **fields)``, the names and fields of ``cnnjax.models``.

Each model is the registered linen model in ``FromLinen``: the same
architecture (written once), the same submodule names (``model.stem``,
``model.stage1_block0``, ``model.head``), the same ``pre_logits`` feature
(``model.intermediates(x)[1]['pre_logits']``), and weights that move
between the two forms with ``cnnjax.nnx.from_linen`` / ``to_linen``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx

from cnnjax import models as linen_models
from cnnjax.nnx.module import FromLinen


def names() -> list[str]:
  """The registered model names (those of ``cnnjax.models.names()``)."""
  return linen_models.names()


def create(name: str, /, *, rngs: nnx.Rngs, input_shape: Sequence[int] | None = None,
           use_running_average: bool = False, variables: Mapping[str, Any] | None = None,
           **fields: Any) -> FromLinen:
  """Builds the registered model ``name`` as an NNX module.

  Example::

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from cnnjax import nnx as cnnx
    >>> model = cnnx.models.create('digits_cnn', num_classes=10, width=8, rngs=nnx.Rngs(0))
    >>> model.eval()
    >>> model(jnp.zeros((2, 8, 8, 1))).shape
    (2, 10)

  Args:
    name: a name from ``names()``.
    rngs: the ``params`` stream initialises the weights; kept for dropout.
    input_shape: one example's shape without the batch axis, for models
      whose parameters depend on it (the channels of the stem; LeNet-5's
      flattened size); default the registry's ``input_shape`` with its
      channels set to ``input_channels`` when that field is given.
    use_running_average: the initial mode (``False``: training).
    variables: linen variables to start from instead of the initialisers
      (a checkpoint's state, ``models.load_torch_state_dict``'s output):
      nothing is initialised or compiled (see ``FromLinen``).
    **fields: the model's fields, as ``cnnjax.models.create`` takes them.

  Raises:
    ValueError, TypeError: as ``cnnjax.models.create`` (unknown name or field);
      ``variables`` that do not fit the model (naming the path).
  """
  linen = linen_models.create(name, **fields)
  entry = linen_models.spec(name)
  shape = tuple(entry.input_shape if input_shape is None else input_shape)
  if input_shape is None and fields.get("input_channels") and len(shape) == 3:
    shape = (*shape[:-1], fields["input_channels"])
  sample = jax.ShapeDtypeStruct((1, *shape), entry.input_dtype)
  return FromLinen(linen, sample, rngs=rngs, use_running_average=use_running_average, keep_rngs=True,
                   variables=variables)
