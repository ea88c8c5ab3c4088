"""Pure training and evaluation steps, written once for all three strategies.

``train_step(state, batch)`` and ``eval_step(state, batch)`` take the batch
they are given and, with ``axis_name=AXIS`` (the default), reduce across
devices with collectives over that axis: the batch is one device's share, as
under ``jax.pmap(axis_name=AXIS)`` or ``jax.shard_map`` over a one-axis mesh
named ``AXIS``; models normalise their BatchNorm layers over the same axis, so
the batch statistics are those of the global batch. With ``axis_name=None``
the same body sees the *global* batch, as under ``jax.jit`` over arrays
sharded along ``AXIS``: there are no collectives in the step or the model,
XLA inserts the cross-device reductions where the global arrays need them
(see ``cnnjax.train.parallel``).

What is learnt is a task object (``cnnjax.train.tasks``; classification by
default): it says what the batch holds, the loss, the metrics and how a batch
is augmented and mixed, so the steps are the same for every task. A
classification batch is a dict of ``'image'`` float ``(B, H, W, C)``,
``'label'`` int32 ``(B,)`` and ``'mask'`` bool ``(B,)`` (``False`` marks
padding), where ``B`` is the per-device batch size; regression batches carry
``'target'`` ``(B, k)``, segmentation batches ``'segmentation'`` ``(B, H, W)``.

Metrics are sums over the global batch (``lax.psum``), never means of
per-device means: the task's ``metric_sums`` (for classification
``loss_sum``, ``correct`` and ``count``, the number of real, unmasked
examples), so a padded last evaluation batch counts each example exactly once.
``finalize(task, steps)`` turns the sums of many steps into the task's
numbers; ``summarize`` is its classification form.

Every collective goes through ``cnnjax.ops.collectives``, which skips it when
the axis has one device (XLA keeps a no-op ``all-reduce`` otherwise, and on
CPU each is a fusion barrier).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from cnnjax.ops import collectives
from cnnjax.train import tasks as tasks_lib
from cnnjax.train.state import TrainState

if TYPE_CHECKING:  # flax.nnx and cnnjax.nnx load only for an NNX run
  from cnnjax.train.nnx_state import NNXTrainState

#: The one name of the device axis: pmap's ``axis_name``, the mesh axis of
#: shard_map, every ``lax.pmean``/``psum`` here, and BatchNorm's ``axis_name``.
AXIS = "batch"

#: A linen or an NNX model's state: what the steps need is ``key()``, ``step``,
#: ``train_on`` (one update) and ``logits`` (evaluation).
State = Union[TrainState, "NNXTrainState"]  # noqa: UP007  (a forward reference: nnx loads lazily)
Batch = Mapping[str, jax.Array]
Metrics = dict[str, jax.Array]
AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]
MixFn = Callable[[jax.Array, jax.Array, jax.Array, float], tuple[jax.Array, jax.Array]]

# Stream indices folded into the per-step key, one per use of randomness.
_AUGMENT, _MIX, _DROPOUT = 0, 1, 2


def _device_index(axis_name: str | None) -> jax.Array | int:
  """This device's index along ``axis_name``; 0 for a global (unmapped) step."""
  return lax.axis_index(axis_name) if axis_name is not None else 0


def _psum(tree, axis_name: str | None):
  return collectives.psum(tree, axis_name) if axis_name is not None else tree


def _pmean(tree, axis_name: str | None):
  return collectives.pmean(tree, axis_name) if axis_name is not None else tree


def _per_example_keys(key: jax.Array, per_device: int,
                      axis_name: str | None = AXIS) -> jax.Array:
  """One key per example, folded with its *global* index in the batch.

  The global index (device index times per-device batch plus position) makes
  the augmentation of an example independent of how many devices share the
  batch.
  """
  offset = _device_index(axis_name) * per_device
  return jax.vmap(lambda i: jax.random.fold_in(key, offset + i))(
      jnp.arange(per_device))


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Softmax cross-entropy per example, in float32.

  Args:
    logits: ``(B, K)``, any float dtype.
    targets: ``(B, K)`` probabilities (one-hot, smoothed or mixed).

  Returns:
    ``(B,)`` float32 losses.
  """
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _inputs(task, batch, key, device, axis_name, *, num_classes, augment, mixup, mixup_alpha,
            cutmix, cutmix_alpha):
  """The augmented, mixed batch of one step and its soft targets (see ``train_step``).

  Soft targets exist for a task with ``targets`` (classification: one-hot,
  smoothed, then mixed); otherwise they are ``None`` and the task reads its
  labels from the batch.
  """
  batch = dict(batch)
  if augment is not None:
    keys = _per_example_keys(jax.random.fold_in(key, _AUGMENT), batch["image"].shape[0],
                             axis_name)
    batch = task.augment_batch(augment, keys, batch)
  targets = task.targets(batch, num_classes) if hasattr(task, "targets") else None
  mix_key = jax.random.fold_in(jax.random.fold_in(key, _MIX), device)
  if mixup is not None and mixup_alpha > 0:
    batch, targets = task.mix_batch(mixup, jax.random.fold_in(mix_key, 0), batch, targets,
                                    mixup_alpha)
  if cutmix is not None and cutmix_alpha > 0:
    batch, targets = task.mix_batch(cutmix, jax.random.fold_in(mix_key, 1), batch, targets,
                                    cutmix_alpha)
  return batch, targets


def _keep_if(finite: jax.Array, new: Any, old: Any) -> Any:
  """``new`` where ``finite``, else ``old``'s values (parameters, optimizer state, statistics); the step advances."""
  keep = lambda a, b: jnp.where(finite, a, b)  # noqa: E731
  return jax.tree_util.tree_map(keep, new, old).replace(step=new.step)


def train_step(
    state: State,
    batch: Batch,
    *,
    num_classes: int = 0,
    task: Any = None,
    label_smoothing: float = 0.0,
    augment: AugmentFn | None = None,
    mixup: MixFn | None = None,
    mixup_alpha: float = 0.0,
    cutmix: MixFn | None = None,
    cutmix_alpha: float = 0.0,
    skip_nonfinite: bool = False,
    axis_name: str | None = AXIS,
) -> tuple[State, Metrics]:
  """One optimizer update on the global batch, or on one device's share of it.

  Bind the keyword arguments with ``functools.partial`` (they are static) and
  map the result over devices with ``cnnjax.train.parallel``.

  Randomness: the step's key is ``fold_in(state.rng, state.step)``. Augmentation
  keys are folded further with each example's global index; mixup/cutmix and
  dropout keys with the device index ``lax.axis_index(axis_name)`` (0 with
  ``axis_name=None``): dropout masks and mixing partners therefore depend on
  how the batch is split, augmentations do not.

  Args:
    state: the replicated ``TrainState`` (a linen model) or ``NNXTrainState``
      (an NNX model): the state runs the model and applies the update
      (``state.train_on``), the step does the rest.
    batch: ``'image'`` ``(B, H, W, C)``, ``'mask'`` ``(B,)`` bool and what
      the task reads (``'label'`` ``(B,)`` int for classification); ``B`` per
      device.
    num_classes: ``K``, the number of logits of a classification task (its
      one-hot targets are built before the model runs).
    task: a ``cnnjax.train.tasks`` object (or one with the same methods);
      default ``Classification(label_smoothing)``.
    label_smoothing: ``optax.smooth_labels`` factor of the default task, 0 to
      disable; give it to the task instead when passing ``task``.
    augment: ``fn(key, image) -> image`` for one ``(H, W, C)`` image, applied
      per example on device through ``task.augment_batch``; ``None`` for no
      augmentation.
    mixup: ``fn(key, images, labels, alpha) -> (images, labels)`` (one of
      ``task.mixers()``), used when ``mixup_alpha > 0``.
    mixup_alpha: Beta parameter of mixup; 0 disables it.
    cutmix: as ``mixup``, used when ``cutmix_alpha > 0``.
    cutmix_alpha: Beta parameter of cutmix; 0 disables it.
    skip_nonfinite: if the global loss or any averaged gradient is NaN/Inf,
      keep the parameters, optimizer state and statistics of ``state``
      (the step counter still advances) and report ``skipped = 1``.
    axis_name: the device axis the batch is split over (``AXIS`` under pmap
      and shard_map), or ``None`` when ``batch`` is the global batch (under
      ``jax.jit`` with shardings): then nothing is reduced explicitly.

  Returns:
    ``(new_state, metrics)``: metrics are the task's ``metric_sums`` (for
    classification ``loss_sum``, ``correct``, ``count``, against the step's
    smoothed or mixed targets), ``skipped`` and ``grad_norm``, identical on
    every device.
  """
  if task is None:
    task = tasks_lib.Classification(label_smoothing=label_smoothing)
  elif label_smoothing:
    raise ValueError(
        f"label_smoothing={label_smoothing!r} is an option of the default task; with "
        f"task={task!r} give it to the task (tasks.Classification(label_smoothing=...))")
  key = jax.random.fold_in(state.key(), state.step)
  device = _device_index(axis_name)
  batch, targets = _inputs(
      task, batch, key, device, axis_name, num_classes=num_classes, augment=augment,
      mixup=mixup, mixup_alpha=mixup_alpha, cutmix=cutmix, cutmix_alpha=cutmix_alpha)
  # Classification's (mixed) soft targets go with the batch to its loss and metrics.
  soft = () if targets is None else (targets,)
  dropout_key = jax.random.fold_in(jax.random.fold_in(key, _DROPOUT), device)

  def loss_fn(logits):
    loss_sum, weight = task.loss_terms(logits, batch, *soft)
    return loss_sum / jnp.maximum(weight, 1.0)

  # Every device holds the same per-device count, so the mean of the
  # per-device mean gradients is the gradient of the global mean loss. With
  # BatchNorm normalising over AXIS the statistics already agree across
  # devices; the mean keeps them identical whatever the model does.
  new_state, logits, grads = state.train_on(batch["image"], loss_fn, dropout_key,
                                            lambda tree: _pmean(tree, axis_name))
  metrics = _psum(task.metric_sums(logits, batch, *soft), axis_name)
  metrics["grad_norm"] = optax.tree.norm(grads)
  if skip_nonfinite:
    finite = jnp.isfinite(metrics["loss_sum"]) & _all_finite(grads)
    new_state = _keep_if(finite, new_state, state)
    metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
  else:
    metrics["skipped"] = jnp.zeros((), jnp.float32)
  return new_state, metrics


def eval_step(state: State, batch: Batch, *, task: Any = None,
              axis_name: str | None = AXIS) -> Metrics:
  """Evaluates a batch (or one device's share of it) with ``train=False``.

  Padded examples (``mask == False``) contribute nothing; the sums are
  ``psum``-ed over ``axis_name`` (global sums already with ``None``), so
  accumulating them over an evaluation pass and finalising once counts every
  real example exactly once.

  Args:
    state: the replicated ``TrainState`` or ``NNXTrainState``.
    batch: as ``train_step``'s.
    task: a ``cnnjax.train.tasks`` object; default ``Classification()``.
    axis_name: as ``train_step``'s.

  Returns:
    The task's ``metric_sums`` (classification: ``loss_sum``, ``correct`` and
    ``count``), identical on every device.
  """
  if task is None:
    task = tasks_lib.Classification()
  return _psum(task.metric_sums(state.logits(batch["image"]), batch), axis_name)


#: Step metrics that are not the task's sums: averaged (``grad_norm``) or summed over steps.
STEP_EXTRAS = ("grad_norm", "skipped")


def finalize(task: Any, metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """The task's numbers (``task.finalize``) from the host sums of any number of steps.

  ``grad_norm`` is averaged over the steps and ``skipped`` summed; they come
  first, as in ``summarize``.

  Args:
    task: the task whose ``metric_sums`` the steps returned.
    metrics: host dicts of step (or evaluation) metrics; at least one.
  """
  extras = {key: np.array([float(np.asarray(m[key])) for m in metrics], np.float64)
            for key in STEP_EXTRAS if key in metrics[0]}
  out = {key: float(v.mean() if key == "grad_norm" else v.sum()) for key, v in extras.items()}
  sums = tasks_lib.accumulate({k: v for k, v in m.items() if k not in STEP_EXTRAS}
                              for m in metrics)
  out.update(task.finalize(sums))
  return out


def summarize(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Turns summed metrics into ``loss``, ``accuracy`` and ``count``.

  Args:
    metrics: host values of ``loss_sum``, ``correct`` and ``count`` (summed over
      any number of steps); other entries are passed through as floats.
  """
  count = float(np.asarray(metrics["count"]))
  out = {k: float(np.asarray(v)) for k, v in metrics.items()
         if k not in ("loss_sum", "correct", "count")}
  out["loss"] = float(np.asarray(metrics["loss_sum"])) / max(count, 1.0)
  out["accuracy"] = float(np.asarray(metrics["correct"])) / max(count, 1.0)
  out["count"] = count
  return out
