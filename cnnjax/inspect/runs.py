"""Reading back what ``experiments/train.py`` wrote: the model and variables of a run, and data arrays.

A run directory (``cnnjax.train.train_and_evaluate``) holds ``config.json``
and ``checkpoints/<step>/``. ``load_run(workdir)`` rebuilds the model the
config names and restores the newest checkpoint's ``params`` and
``batch_stats`` onto one device, whatever number of devices wrote it. The
model is built without a device axis (``axis_name=None``), since inspection
runs in evaluation mode on one device.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

PyTree = Any


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained run, ready for ``model.apply(variables, x, train=False)``.

  Attributes:
    model: the module the config names, with the data set's ``num_classes``.
    variables: ``{'params': ..., 'batch_stats': ...}`` of the newest checkpoint.
    config: the run's config (``config.json``).
    step: the checkpoint's training step.
    workdir: the run directory (absolute).
  """

  model: nn.Module
  variables: PyTree
  config: ml_collections.ConfigDict
  step: int
  workdir: str


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config a run was trained with, from ``workdir/config.json``."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.isfile(path):
    raise ValueError(
        f"{os.fspath(workdir)!r} is not a training run: no config.json in it. Train one with "
        f"python experiments/train.py --config experiments/configs/digits_cnn.py "
        f"--workdir {os.fspath(workdir)}")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run(workdir: str | os.PathLike) -> Run:
  """Restores the newest checkpoint of a run made by ``experiments/train.py``.

  Example::

    run = load_run('runs/digits')   # a directory written by experiments/train.py
    logits = run.model.apply(run.variables, images, train=False)

  Raises:
    ValueError: no ``config.json`` or no checkpoint in ``workdir``.
  """
  from cnnjax import data as data_lib  # noqa: PLC0415
  from cnnjax import models  # noqa: PLC0415
  from cnnjax.train import loop  # noqa: PLC0415

  workdir = os.path.abspath(os.fspath(workdir))
  config = read_config(workdir)
  step, state, _ = loop.restore_checkpoint(config, workdir)
  info = data_lib.dataset_info(config.data.name, data_dir=config.data.data_dir)
  kwargs = dict(config.model.kwargs)
  entry = models.spec(config.model.name)
  if "dtype" in entry.fields():
    kwargs["dtype"] = jnp.dtype(config.model.dtype)
  model = models.create(config.model.name, num_classes=info.num_classes, **kwargs)
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return Run(model=model, variables=variables, config=config, step=int(step), workdir=workdir)


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
