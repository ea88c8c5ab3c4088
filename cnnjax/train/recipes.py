"""Helpers for experiment config files: one line per recipe part, the variants in one place.

A config file (``experiments/configs/*.py``) starts from ``base_config()``,
sets its model and data, and uses these for the parts every recipe has::

  c = base_config()
  c.model.name, c.data.name = "resnet18_cifar", "cifar10"
  recipes.optimizer(c, "sgd", 0.1, nesterov=True, weight_decay=5e-4, warmup_epochs=1.0)
  return recipes.finish(c, variant, "cifar10_resnet18", smoke={"train_subset": 256, "batch_size": 64})

``finish`` applies the ``:smoke`` variant (``smoke_variant``: a few steps, no progress bar), refuses
any other variant with a message naming the config, and locks the config.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from cnnjax.train.config import lock


def optimizer(c: ml_collections.ConfigDict, name: str, learning_rate: float, *,
              schedule: str = "cosine", warmup_epochs: float = 0.0, **fields: Any) -> None:
  """Sets ``c.optimizer`` (``name``, ``learning_rate`` and ``fields`` such as
  ``momentum``, ``nesterov``, ``weight_decay``) and ``c.schedule`` (``schedule``,
  ``warmup_epochs``)."""
  c.optimizer.name, c.optimizer.learning_rate = name, learning_rate
  for key, value in fields.items():
    c.optimizer[key] = value
  c.schedule.name, c.schedule.warmup_epochs = schedule, warmup_epochs


def smoke_variant(c: ml_collections.ConfigDict, *, num_epochs: float = 1.0,
                  log_every_steps: int = 5, train_subset: int | None = None,
                  batch_size: int | None = None, overrides: dict[str, Any] | None = None) -> None:
  """The ``:smoke`` variant: a few steps, no progress bar.

  ``batch_size`` sets the evaluation batch too; ``overrides`` are further
  dotted keys, e.g. ``{'plots': True, 'model.kwargs.depth': 10}``.
  """
  c.num_epochs, c.log_every_steps, c.progress_bar = num_epochs, log_every_steps, False
  if train_subset is not None:
    c.data.train_subset = train_subset
  if batch_size is not None:
    c.batch_size = c.eval_batch_size = batch_size
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split(".")
    node = c
    for name in parents:
      node = node[name]
    node[leaf] = value


def finish(c: ml_collections.ConfigDict, variant: str | None, name: str, *,
           smoke: dict[str, Any] | None = None) -> ml_collections.ConfigDict:
  """``c`` with ``variant`` applied (``'smoke'`` or none), checked and locked.

  Raises:
    ValueError: another variant, naming the config ``name`` and the variants it has.
  """
  if variant == "smoke":
    smoke_variant(c, **(smoke or {}))
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of {name}; expected 'smoke' or none")
  return lock(c)
