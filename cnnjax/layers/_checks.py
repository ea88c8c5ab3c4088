"""What the layers add to ``cnnjax.ops.validation``: reading the shapes of existing variables.

Every input check itself lives in ``cnnjax.ops.validation`` (re-exported here
for the layer modules), so ops, layers, blocks and models word their errors
the same way.
"""

from __future__ import annotations

import flax.linen as nn

from cnnjax.ops.validation import (  # noqa: F401  (re-exported for the layers)
    check_array,
    check_floating,
    check_layer_input,
    kernel_tuple,
    layout_name,
)


def existing_shape(module: nn.Module, collection: str, name: str) -> tuple[int, ...] | None:
  """The shape of an already created variable, or ``None`` (e.g. during ``init``)."""
  if not module.has_variable(collection, name):
    return None
  value = nn.meta.unbox(module.get_variable(collection, name))
  return tuple(value.shape)
