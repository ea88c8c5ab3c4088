"""Transfer learning: a trained backbone under a new head, frozen or fine-tuned.

The usual recipe (Yosinski et al., 2014; the PyTorch transfer-learning tutorial), in three steps:

1. ``load_backbone(new_variables, trained_variables)``: a model built for the
   new task (another ``num_classes``) takes every trained variable except its
   ``head`` (parameters and BatchNorm statistics).
2. Train the head alone: ``transfer_optimizer(head_tx)`` gives the backbone
   ``optax.set_to_zero()`` through ``optax.partition`` (formerly
   ``optax.multi_transform``), so its parameters receive exactly zero updates
   and keep their values bit for bit. The BatchNorm statistics are frozen too:
   ``cnnjax.train.fit(..., freeze_statistics=True)`` trains through
   ``cnnjax.train.frozen_apply``, which
   runs the model with ``train=False`` (running statistics, no update, no
   dropout) and hands the statistics back unchanged. Without that, a
   "frozen" backbone would still drift: every training-mode forward pass
   moves the running means and variances toward the new data.
3. Fine-tune everything at a lower learning rate:
   ``transfer_optimizer(head_tx, backbone_tx)`` with a smaller schedule for
   the backbone group.

``cnnjax.train.fit`` runs these steps with the engine's training step on one
device, over arrays held in memory (small data sets such as digits); this
module needs nothing from ``cnnjax.train``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

PyTree = Any
HEAD, BACKBONE = "head", "backbone"
COLLECTIONS = ("params", "batch_stats")


def _head_prefixes(head: str | Sequence[str]) -> list[tuple[str, ...]]:
  heads = [head] if isinstance(head, str) else list(head)
  if not heads or not all(isinstance(h, str) and h for h in heads):
    raise ValueError(f"head must be a module path like 'head' or 'fc7/dense' (or a list of "
                     f"them), got {head!r}")
  return [tuple(h.split("/")) for h in heads]


def _in_head(path: tuple[str, ...], prefixes: list[tuple[str, ...]]) -> bool:
  return any(path[:len(p)] == p for p in prefixes)


def _flat(tree: Mapping[str, Any]) -> dict[tuple[str, ...], Any]:
  return traverse_util.flatten_dict(dict(tree)) if tree else {}


def load_backbone(new_variables: PyTree, trained_variables: PyTree,
                  head: str | Sequence[str] = HEAD) -> dict[str, Any]:
  """Copies a trained backbone into a freshly initialised model for a new task.

  Every variable of ``new_variables`` in the ``params`` and ``batch_stats``
  collections takes the trained value, except those under ``head`` (the new
  classifier), which keep their fresh initialisation. Other collections of
  ``new_variables`` are kept as they are.

  Example::

    >>> import jax, jax.numpy as jnp
    >>> from cnnjax import models
    >>> x = jnp.zeros((1, 8, 8, 1))
    >>> trained = models.create('digits_cnn').init(jax.random.key(1), x, train=False)  # e.g. load_run(...).variables
    >>> new = models.create('digits_cnn', num_classes=5)
    >>> fresh = new.init(jax.random.key(0), x, train=False)
    >>> variables = load_backbone(fresh, trained)  # head: fresh, rest: trained
    >>> variables['params']['head']['kernel'].shape
    (128, 5)

  Args:
    new_variables: ``{'params': ..., 'batch_stats': ...}`` of the new model.
    trained_variables: the same collections of the trained model.
    head: module path(s) of the new part, ``'/'``-joined (``'head'``, or
      ``['fc7', 'head']`` to replace two layers).

  Returns:
    The new model's variables with the trained backbone.

  Raises:
    ValueError: the backbones differ: a variable missing on either side, or
      a shape mismatch (naming the variable and both shapes).
  """
  prefixes = _head_prefixes(head)
  out: dict[str, Any] = {k: v for k, v in dict(new_variables).items() if k not in COLLECTIONS}
  for collection in COLLECTIONS:
    new_flat = _flat(new_variables.get(collection, {}))
    old_flat = _flat(trained_variables.get(collection, {}))
    backbone_new = {p for p in new_flat if not _in_head(p, prefixes)}
    backbone_old = {p for p in old_flat if not _in_head(p, prefixes)}
    missing = sorted("/".join(p) for p in backbone_new - backbone_old)
    unexpected = sorted("/".join(p) for p in backbone_old - backbone_new)
    if missing or unexpected:
      raise ValueError(
          f"load_backbone: the backbones differ in {collection!r}: missing from the trained "
          f"variables {missing[:8]}{' ...' if len(missing) > 8 else ''}; only in the trained "
          f"variables {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}. Build the new "
          f"model with the same architecture and fields except num_classes, and name the "
          f"replaced layers with head= (now {head!r})")
    merged = {}
    for path, value in new_flat.items():
      if path in backbone_new:
        trained = old_flat[path]
        if tuple(np.shape(trained)) != tuple(np.shape(value)):
          raise ValueError(
              f"load_backbone: {collection}/{'/'.join(path)} has shape {tuple(np.shape(trained))} "
              f"in the trained variables but {tuple(np.shape(value))} in the new model")
        value = jnp.asarray(trained, dtype=jnp.asarray(value).dtype)
      merged[path] = value
    if collection in new_variables:
      out[collection] = traverse_util.unflatten_dict(merged) if merged else {}
  return out


def backbone_labels(params: PyTree, head: str | Sequence[str] = HEAD) -> PyTree:
  """A pytree like ``params`` with ``'head'`` on the leaves under ``head`` and ``'backbone'`` elsewhere."""
  prefixes = _head_prefixes(head)

  def label(path, _):
    names = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
    return HEAD if _in_head(names, prefixes) else BACKBONE

  labels = jax.tree_util.tree_map_with_path(label, params)
  if HEAD not in jax.tree_util.tree_leaves(labels):
    raise ValueError(f"no parameter lies under head={head!r}; top-level modules are "
                     f"{sorted(params)}")
  return labels


def transfer_optimizer(head_tx: optax.GradientTransformation,
                       backbone_tx: optax.GradientTransformation | None = None, *,
                       head: str | Sequence[str] = HEAD) -> optax.GradientTransformation:
  """One optimizer per parameter group: the head and the backbone.

  ``optax.partition`` (``optax.multi_transform``) sends the head's gradients
  to ``head_tx`` and the backbone's to ``backbone_tx``; with ``backbone_tx``
  ``None`` the backbone is frozen with ``optax.set_to_zero()``: its updates
  are exactly zero, so its parameters never change (and no optimizer state
  is kept for them).

  Fine-tuning uses a smaller schedule for the backbone, e.g.::

    tx = transfer_optimizer(optax.sgd(0.05, momentum=0.9),
                            optax.sgd(optax.cosine_decay_schedule(0.005, 500), momentum=0.9))

  Args:
    head_tx: the head's optimizer.
    backbone_tx: the backbone's optimizer, or ``None`` to freeze it.
    head: module path(s) of the head (see ``load_backbone``).
  """
  transforms = {HEAD: head_tx, BACKBONE: backbone_tx or optax.set_to_zero()}
  return optax.partition(transforms, functools.partial(backbone_labels, head=head))


def accuracy(model: nn.Module, variables: PyTree, images: np.ndarray, labels: np.ndarray, *,
             batch_size: int = 512) -> float:
  """Top-1 accuracy of ``model`` (evaluation mode) on in-memory arrays."""
  images = np.asarray(images, np.float32)
  labels = np.asarray(labels)
  predict = jax.jit(lambda v, x: jnp.argmax(model.apply(v, x, train=False), -1))
  correct = 0
  for start in range(0, images.shape[0], batch_size):
    batch = images[start:start + batch_size]
    correct += int(np.sum(np.asarray(predict(variables, batch)) == labels[start:start + batch_size]))
  return correct / max(images.shape[0], 1)
