"""Optimizers and learning-rate schedules by name, from a config.

``create_optimizer(config.optimizer, config.schedule, steps_per_epoch,
num_epochs)`` chains global-norm clipping (when ``grad_clip_norm > 0``)
and the optimizer with its schedule, with weight decay masked so that only
kernels of rank > 1 decay (biases, BatchNorm scales and
offsets, and any other rank-0/1 parameter do not). For ``sgd`` and ``adam``
the decay is coupled L2: ``weight_decay * w`` is added to the gradient before
momentum (or Adam's moments) and the learning rate scale it, as in the ResNet
recipe; ``adamw`` decouples it (Loshchilov & Hutter, 2019), subtracting
``learning_rate * weight_decay * w`` after the Adam update.

Optimizers: ``sgd`` (``momentum``, ``nesterov``), ``adam``, ``adamw``.
Schedules: ``constant``, ``cosine`` (linear warm-up then cosine decay to zero),
``piecewise`` (linear warm-up then multiply by ``decay_factor`` at each epoch
in ``boundaries_epochs``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import optax

PyTree = Any

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "piecewise")


def decay_mask(params: PyTree) -> PyTree:
  """``True`` for the leaves that weight decay applies to: rank > 1 kernels.

  Decaying biases and normalisation parameters hurts accuracy and is not what
  the weight-decay literature means (Goyal et al., 2017; Loshchilov & Hutter,
  2019), so leaves of rank 0 or 1 and leaves under a ``scale``/``bias`` name are
  left out.
  """
  def is_decayed(path, leaf) -> bool:
    names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
    if names and names[-1] in ("bias", "scale"):
      return False
    return getattr(leaf, "ndim", 0) > 1

  return jax.tree_util.tree_map_with_path(is_decayed, params)


def create_learning_rate_schedule(
    schedule: Mapping[str, Any],
    base_learning_rate: float,
    steps_per_epoch: int,
    num_epochs: float,
) -> optax.Schedule:
  """Builds a schedule from ``schedule.name`` and its fields.

  Args:
    schedule: mapping with ``name`` in ``SCHEDULES``, ``warmup_epochs``,
      ``boundaries_epochs`` (piecewise) and ``decay_factor`` (piecewise).
    base_learning_rate: the peak learning rate.
    steps_per_epoch: training steps per epoch (> 0).
    num_epochs: length of training, for the cosine decay.

  Returns:
    A function from the step (int) to the learning rate.
  """
  name = schedule["name"]
  if name not in SCHEDULES:
    raise ValueError(
        f"unknown schedule {name!r}; expected one of {list(SCHEDULES)} "
        f"(config key schedule.name)")
  if steps_per_epoch <= 0:
    raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
  warmup_steps = int(round(schedule.get("warmup_epochs", 0.0) * steps_per_epoch))
  total_steps = max(int(round(num_epochs * steps_per_epoch)), 1)
  if name == "constant":
    main = optax.constant_schedule(base_learning_rate)
  elif name == "cosine":
    main = optax.cosine_decay_schedule(
        base_learning_rate, decay_steps=max(total_steps - warmup_steps, 1))
  else:
    boundaries = [int(round(e * steps_per_epoch)) - warmup_steps
                  for e in schedule.get("boundaries_epochs", ())]
    factor = schedule.get("decay_factor", 0.1)
    main = optax.piecewise_constant_schedule(
        base_learning_rate, {b: factor for b in boundaries if b > 0})
  if warmup_steps <= 0:
    return main
  warmup = optax.linear_schedule(0.0, base_learning_rate, warmup_steps)
  return optax.join_schedules([warmup, main], boundaries=[warmup_steps])


def create_optimizer(
    optimizer: Mapping[str, Any],
    schedule: Mapping[str, Any],
    steps_per_epoch: int,
    num_epochs: float,
    *,
    learning_rate: optax.Schedule | None = None,
) -> optax.GradientTransformation:
  """Builds the optax chain named by a config.

  Args:
    optimizer: mapping with ``name`` in ``OPTIMIZERS``, ``learning_rate``,
      ``momentum``, ``nesterov`` (sgd), ``b1``, ``b2``, ``eps`` (adam, adamw),
      ``weight_decay`` and ``grad_clip_norm`` (0 disables clipping).
    schedule: see ``create_learning_rate_schedule``.
    steps_per_epoch: training steps per epoch.
    num_epochs: length of training, for decaying schedules.
    learning_rate: the schedule, if the caller already built it with
      ``create_learning_rate_schedule`` (so that the one the optimizer follows
      and the one the logs report are the same object).

  Returns:
    An ``optax.GradientTransformation``. The learning rate at a step is
    ``create_learning_rate_schedule(schedule, ...)(step)``, the same schedule.
  """
  name = optimizer["name"]
  if name not in OPTIMIZERS:
    raise ValueError(
        f"unknown optimizer {name!r}; expected one of {list(OPTIMIZERS)} "
        f"(config key optimizer.name)")
  lr = learning_rate if learning_rate is not None else create_learning_rate_schedule(
      schedule, optimizer["learning_rate"], steps_per_epoch, num_epochs)
  weight_decay = optimizer.get("weight_decay", 0.0)
  parts = []
  clip = optimizer.get("grad_clip_norm", 0.0)
  if clip and clip > 0:
    parts.append(optax.clip_by_global_norm(clip))
  if name == "sgd":
    if weight_decay:
      # Coupled L2 (added to the gradient before momentum), as in the ResNet
      # recipes that SGD configs reproduce.
      parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    momentum = optimizer.get("momentum", 0.0)
    parts.append(optax.sgd(lr, momentum=momentum or None,
                           nesterov=bool(optimizer.get("nesterov", False))))
  elif name == "adam":
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay, mask=decay_mask))
    parts.append(optax.adam(lr, b1=optimizer.get("b1", 0.9),
                            b2=optimizer.get("b2", 0.999),
                            eps=optimizer.get("eps", 1e-8)))
  else:
    parts.append(optax.adamw(lr, b1=optimizer.get("b1", 0.9),
                             b2=optimizer.get("b2", 0.999),
                             eps=optimizer.get("eps", 1e-8),
                             weight_decay=weight_decay, mask=decay_mask))
  return optax.chain(*parts)
