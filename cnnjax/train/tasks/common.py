"""What every task shares: batch masks and key checks, host accumulation of metric sums."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Batch = Mapping[str, Array]
Sums = dict[str, Array]

LOSSES = ("mse", "huber")


def _mask(batch: Batch) -> Array:
  return jnp.asarray(batch["mask"]).astype(jnp.float32)


def _check_keys(task: str, batch: Batch, keys: Iterable[str]) -> None:
  missing = [k for k in keys if k not in batch]
  if missing:
    raise ValueError(
        f"the {task} task needs batch keys {list(keys)}; the batch has {sorted(batch)}, "
        f"missing {missing} (is data.name a data set of this task?)")


def accumulate(sums: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Adds per-step metric sums on the host, key by key, in float64 (integers in int64).

  Args:
    sums: host (or device) dicts from ``metric_sums``/``psum``, any number.

  Returns:
    ``{key: summed array}``; arrays keep their shape (a confusion matrix stays
    ``(K, K)``).
  """
  entries = list(sums)
  out: dict[str, np.ndarray] = {}
  for key in (entries[0] if entries else {}):
    # One stacked sum per key (numpy's pairwise summation), the same numbers
    # as summing the per-step floats of a scalar metric in one array.
    values = np.stack([np.asarray(entry[key]) for entry in entries])
    values = values.astype(np.int64 if np.issubdtype(values.dtype, np.integer) else np.float64)
    out[key] = values.sum(axis=0)
  return out


def _augment_images(augment: Any, keys: Array, batch: Batch) -> dict[str, Array]:
  return dict(batch, image=jax.vmap(augment)(keys, batch["image"]))


def _augmentations() -> Any:
  from cnnjax.data import augment as augment_lib  # noqa: PLC0415
  return augment_lib
