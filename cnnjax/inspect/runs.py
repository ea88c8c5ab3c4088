"""Data arrays for inspecting a trained run.

``split_arrays`` reads a whole split, normalised as training normalises it.
The run itself (its model and the variables of its newest checkpoint) comes
from ``cnnjax.train.load_run``: reading checkpoints belongs to the training
package, which this one does not import.
"""

from __future__ import annotations

import numpy as np


def split_arrays(name: str, split: str, *, data_dir: str | None = None,
                 batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """All examples of a split, normalised exactly as training normalises them.

  Reads the split in order through ``cnnjax.data.make_loader(train=False)``
  and drops the padding of the last batch.

  Returns:
    ``(images (N, H, W, C) float32, labels (N,) int32)``.
  """
  from cnnjax import data as data_lib  # noqa: PLC0415

  loader = data_lib.make_loader(name, split, batch_size=batch_size, train=False, seed=0,
                                data_dir=data_dir, process_index=0, process_count=1)
  images, labels = [], []
  for batch in loader:
    mask = np.asarray(batch["mask"], bool)
    images.append(np.asarray(batch["image"])[mask])
    labels.append(np.asarray(batch["label"])[mask])
  return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int32)
