"""Transfer learning's training: the engine's step on in-memory arrays, in the loader's order.

``frozen_apply(model)`` runs a model in evaluation mode wherever the step
asks for training mode: training with frozen BatchNorm statistics. ``fit``
trains a model from given variables (a pretrained backbone under a
new head, ``cnnjax.inspect.load_backbone``) with an optimizer such as
``cnnjax.inspect.transfer_optimizer``'s. It is the engine's step
(``cnnjax.train.setup.compile_steps`` over ``cnnjax.train.steps.train_step``)
on one device, fed batches in the order of ``cnnjax.data.BatchPlan``: the
training loader's order for the same seed (epoch ``e`` is
``np.random.default_rng([seed, e]).permutation(N)``, the partial last batch
dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

from cnnjax.data.loader import BatchPlan
from cnnjax.train.parallel import Parallel
from cnnjax.train.setup import compile_steps
from cnnjax.train.state import TrainState

PyTree = Any


def frozen_apply(model: nn.Module) -> Callable[..., Any]:
  """``model.apply`` that always runs in evaluation mode: for training with frozen statistics.

  Called as the training step calls ``apply_fn`` (``train=True``,
  ``mutable=['batch_stats']``, ``rngs=...``), it runs ``model`` with
  ``train=False`` and returns the ``batch_stats`` it was given, unchanged.
  BatchNorm then normalises with the pretrained running statistics, which
  stay bit-identical, and dropout is off: the backbone is a fixed feature
  extractor, as PyTorch's ``model.eval()`` does for feature extraction.
  """

  def apply(variables, *args, train: bool = False, mutable: Any = False,
            rngs: Any = None, **kwargs):
    del train, rngs  # Evaluation mode draws no random numbers.
    out = model.apply(variables, *args, train=False, **kwargs)
    if mutable:
      return out, {"batch_stats": variables.get("batch_stats", {})}
    return out

  return apply


def _check(model, variables, images, labels, steps, batch_size) -> int:
  """The number of logits; ``ValueError`` for inconsistent arguments."""
  n = images.shape[0]
  if labels.shape != (n,):
    raise ValueError(f"labels must be ({n},) for {n} images, got shape {labels.shape}")
  if not 0 < batch_size <= n:
    raise ValueError(f"batch_size must be in [1, {n}] (the number of images), got {batch_size}")
  if steps <= 0:
    raise ValueError(f"steps must be positive, got {steps}")
  logits = jax.eval_shape(lambda v: model.apply(v, images[:1], train=False), variables)
  num_classes = logits.shape[-1]
  if labels.min() < 0 or labels.max() >= num_classes:
    raise ValueError(f"labels must be in [0, {num_classes}) for a model with {num_classes} "
                     f"logits, got range [{labels.min()}, {labels.max()}]")
  return num_classes


def fit(model: nn.Module, variables: PyTree, tx: optax.GradientTransformation,
        images: np.ndarray, labels: np.ndarray, *, steps: int, batch_size: int, seed: int = 0,
        freeze_statistics: bool = False) -> tuple[dict[str, Any], np.ndarray]:
  """Trains ``model`` from ``variables`` for ``steps`` steps on in-memory arrays.

  Args:
    model: a linen module with ``num_classes`` logits, called as ``model(x, train)``.
    variables: ``{'params': ..., 'batch_stats': ...}`` to start from.
    tx: the optimizer (e.g. from ``cnnjax.inspect.transfer_optimizer``).
    images: ``(N, H, W, C)`` float32, normalised.
    labels: ``(N,)`` ints in ``[0, num_classes)``.
    steps: optimizer updates.
    batch_size: examples per update, ``<= N``.
    seed: data order and dropout.
    freeze_statistics: train through ``frozen_apply``
      (evaluation mode: the BatchNorm statistics stay as given, no dropout).

  Returns:
    ``(variables, losses)``: the trained variables (numpy) and the ``(steps,)``
    training losses.
  """
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels, np.int32)
  num_classes = _check(model, variables, images, labels, steps, batch_size)
  apply_fn = frozen_apply(model) if freeze_statistics else model.apply
  state = TrainState.create(
      apply_fn=apply_fn, params=variables["params"], tx=tx,
      batch_stats=variables.get("batch_stats", {}),
      rng=jax.random.key_data(jax.random.key(seed)))
  parallel = Parallel("pmap", devices=jax.local_devices()[:1])
  step_fn, _ = compile_steps(parallel, {"num_classes": num_classes})
  state = parallel.put_state(state)
  plan = BatchPlan(images.shape[0], batch_size, 0, 1, train=True, seed=seed)
  losses = []
  for step in range(steps):
    index, mask = plan(step)
    batch = {"image": images[index], "label": labels[index], "mask": mask}
    state, metrics = step_fn(state, parallel.shard_batch(batch))
    losses.append(metrics["loss_sum"])
  host = parallel.host_state(state)
  losses = np.asarray([parallel.host_metrics(x) for x in losses]) / batch_size
  out = {"params": host.params}
  if variables.get("batch_stats"):
    out["batch_stats"] = host.batch_stats
  return out, losses
