"""Cross-device means and sums that cost nothing over an axis of one device.

``lax.pmean``/``lax.psum`` over a named axis of size 1 compute nothing, yet
XLA still emits an ``all-reduce`` for each, and on CPU each one is a fusion
barrier: ResNet-18's training step under ``jax.pmap`` on one device holds 26
of them (BatchNorm's moments forward and backward, the step's gradients and
statistics) and trains 16 % slower than the same step without them
(``BENCHMARKS.md``). The size of a ``pmap``/``shard_map``/``vmap`` axis is
static, so these versions return their input unchanged when it is 1 and call
the collective otherwise: same values, same gradients, fewer ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jax import lax

AxisName = str | tuple[str, ...]


def axis_size(axis_name: AxisName, caller: str = "a collective") -> int:
  """Number of devices (or mapped slices) that ``axis_name`` names, bound or not.

  Args:
    axis_name: a name bound by ``jax.pmap``, ``jax.shard_map`` or ``jax.vmap``
      (or a tuple of names: the product of their sizes).
    caller: who asks, named in the error.

  Returns:
    The static size of the axis.

  Raises:
    ValueError: no axis of that name is bound where this is traced.
  """
  try:
    return int(lax.axis_size(axis_name))
  except NameError as err:
    raise ValueError(
        f"{caller} reduces over the named axis {axis_name!r}, but no axis of that "
        f"name is bound here. Run it under jax.pmap(..., axis_name={axis_name!r}) "
        f"or jax.shard_map over a mesh axis {axis_name!r}, or pass axis_name=None "
        f"for per-device values. (jax: {err})") from None


def _reduce(op, tree, axis_name, axis_index_groups, caller):
  if axis_size(axis_name, caller) == 1:
    return tree
  return op(tree, axis_name, axis_index_groups=axis_index_groups)


def pmean(tree: Any, axis_name: AxisName,
          axis_index_groups: Sequence[Sequence[int]] | None = None,
          caller: str = "pmean") -> Any:
  """``lax.pmean`` of every leaf of ``tree``, skipped over an axis of size 1.

  ``tree`` is a pytree of arrays of any shapes; the result has the same
  shapes and dtypes. ``axis_index_groups`` averages within subgroups of the
  axis; ``caller`` is named in the ``ValueError`` for an unbound axis.
  """
  return _reduce(lax.pmean, tree, axis_name, axis_index_groups, caller)


def psum(tree: Any, axis_name: AxisName,
         axis_index_groups: Sequence[Sequence[int]] | None = None,
         caller: str = "psum") -> Any:
  """``lax.psum`` of every leaf of ``tree``, skipped over an axis of size 1 (as ``pmean``)."""
  return _reduce(lax.psum, tree, axis_name, axis_index_groups, caller)
