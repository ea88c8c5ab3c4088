"""What a network is trained to do: classification, regression, segmentation.

A task is a small object the training and evaluation steps call; it knows

* what the batch holds (``batch_keys``, checked by ``check_batch``) and how
  many outputs the model needs (``num_outputs(info)``);
* the loss: ``loss_terms(logits, batch)`` returns ``(loss_sum, weight)`` in
  float32 over the unmasked part of a device's batch, so a step's loss is
  ``loss_sum / max(weight, 1)`` and bf16 logits never reach the reduction;
* the metrics: ``metric_sums(logits, batch)`` returns sums over the unmasked
  examples only (padded evaluation rows count zero times), each of which can
  be ``lax.psum``-ed over devices and added over steps; ``finalize(sums)``
  turns the sums of a whole split into numbers once, so split metrics are
  exact (a mean IoU from the split's confusion matrix, an R² from the split's
  sums), never means of per-batch values;
* what a summary and the plots show: ``summary_keys`` (written as
  ``test_<key>``), ``plot_keys`` and ``primary`` (the metric that says how good
  a run is, with ``higher_is_better``).

* how a training batch is augmented and mixed: ``augment_batch(fn, keys,
  batch)`` applies a per-image augmentation ``fn(key, image)`` (and, for
  segmentation, the same geometry to the class map); ``mixers()`` names the
  mixing functions the task allows (``'mixup'``, ``'cutmix'``) and
  ``mix_batch(fn, key, batch, targets, alpha)`` applies one.

``Classification`` reproduces the original steps exactly (softmax
cross-entropy on one-hot, optionally smoothed or mixed targets; ``loss_sum``,
``correct``, ``count``). ``get(name, **fields)`` builds one by name; a user
may pass any object with the same methods.

Every ``logits`` here is what the model returns: ``(B, K)`` for
classification, ``(B, k)`` for regression, ``(B, H, W, K)`` for segmentation.
A batch always holds ``'mask'`` ``(B,)`` bool (``False``: padding).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from cnnjax.train.tasks.classification import Classification
from cnnjax.train.tasks.common import LOSSES, accumulate
from cnnjax.train.tasks.regression import Regression
from cnnjax.train.tasks.segmentation import Segmentation, mean_iou

__all__ = ["LOSSES", "TASKS", "Classification", "Regression", "Segmentation", "accumulate",
           "from_config", "get", "mean_iou"]


TASKS = {"classification": Classification, "regression": Regression, "segmentation": Segmentation}


def from_config(config: Mapping[str, Any]) -> Classification | Regression | Segmentation:
  """The task a run config asks for (``task`` and its options; see ``cnnjax.train.config``)."""
  name = config.get("task", "classification")
  if name == "regression":
    return Regression(loss=config.get("regression_loss", "mse"),
                      huber_delta=float(config.get("huber_delta", 1.0)),
                      target_mean=float(config.get("target_mean", 0.0)),
                      target_std=float(config.get("target_std", 1.0)))
  if name == "segmentation":
    return Segmentation(ignore_label=int(config.get("ignore_label", 255)))
  if name == "classification":
    return Classification(label_smoothing=float(config.get("label_smoothing", 0.0)))
  raise ValueError(f"config task must be one of {sorted(TASKS)}, got {name!r}")


def get(name: str, **fields: Any) -> Classification | Regression | Segmentation:
  """The task called ``name`` with ``fields`` (e.g. ``get('regression', loss='huber')``).

  Raises:
    ValueError: unknown name (the message lists the known ones) or unknown field.
  """
  if name not in TASKS:
    raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
  cls = TASKS[name]
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"task {name!r} has no fields {unknown}; expected some of {sorted(known)}")
  return cls(**fields)
