"""The training state: parameters, BatchNorm statistics, optimizer state and a key.

``TrainState`` is a pytree (a ``flax.struct`` dataclass), so it passes through
``jax.pmap``, ``jax.shard_map`` and ``jax.jit`` whole and is donated between
steps. ``apply_fn`` and ``tx`` are static fields, as in
``flax.training.train_state.TrainState``, which this class extends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

PyTree = Any

#: The fields of a ``TrainState`` that a checkpoint holds (the pytree leaves).
CHECKPOINT_FIELDS = ("step", "params", "batch_stats", "opt_state", "rng")


class TrainState(train_state.TrainState):
  """``flax.training.train_state.TrainState`` with BatchNorm statistics and a key.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: the ``'params'`` collection of the model.
    batch_stats: the ``'batch_stats'`` collection (running means and variances
      of BatchNorm layers); an empty dict for models without normalisation.
    opt_state: the optax state of ``tx``.
    rng: uint32 key data, shape ``(2,)`` for the default threefry
      implementation (``jax.random.key_data`` of a key). Steps fold the step
      number and the device index into it and never update it, so the key of
      step ``s`` depends only on the seed and ``s``: a resumed run draws the
      same dropout masks and augmentations as an uninterrupted one.
    apply_fn: ``model.apply`` (static).
    tx: the ``optax.GradientTransformation`` (static).
  """
  batch_stats: PyTree = None
  rng: jax.Array = None

  def key(self) -> jax.Array:
    """The typed PRNG key wrapped around ``rng``."""
    return jax.random.wrap_key_data(self.rng)

  def logits(self, images: jax.Array) -> jax.Array:
    """The model's output on ``images`` ``(B, H, W, C)`` with ``train=False``."""
    return self.apply_fn(self.variables(), images, train=False)

  def train_on(self, images: jax.Array, loss_fn: Callable[[jax.Array], jax.Array],
               dropout_key: jax.Array, reduce: Callable[[PyTree], PyTree]
               ) -> tuple[TrainState, jax.Array, PyTree]:
    """One optimizer update: ``(new_state, logits, grads)``.

    Args:
      images: the step's batch ``(B, H, W, C)`` (augmented, mixed).
      loss_fn: the scalar loss of the model's training-mode output.
      dropout_key: the ``'dropout'`` key of the call.
      reduce: averages a pytree over the device axis (identity for a
        global batch): applied to the gradients and the updated statistics.
    """
    def loss(params):
      logits, updates = self.apply_fn(
          {"params": params, "batch_stats": self.batch_stats}, images,
          train=True, mutable=["batch_stats"], rngs={"dropout": dropout_key})
      return loss_fn(logits), (logits, updates.get("batch_stats", {}))

    (_, (logits, batch_stats)), grads = jax.value_and_grad(loss, has_aux=True)(self.params)
    grads = reduce(grads)
    new = self.apply_gradients(grads=grads, batch_stats=reduce(batch_stats))
    return new, logits, grads

  def variables(self) -> dict[str, PyTree]:
    """``{'params': ..., 'batch_stats': ...}`` for ``apply_fn``."""
    return {"params": self.params, "batch_stats": self.batch_stats}

  def checkpoint_items(self) -> dict[str, PyTree]:
    """The pytree fields saved in a checkpoint, by name."""
    return {name: getattr(self, name) for name in CHECKPOINT_FIELDS}

  def replace_checkpoint_items(self, items: dict[str, PyTree]) -> "TrainState":
    """Returns this state with the fields of ``items`` (see ``checkpoint_items``)."""
    missing = set(CHECKPOINT_FIELDS) - set(items)
    if missing:
      raise ValueError(
          f"checkpoint items must hold {list(CHECKPOINT_FIELDS)}, "
          f"missing {sorted(missing)}")
    return self.replace(**{name: items[name] for name in CHECKPOINT_FIELDS})


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    *,
    seed: int,
    input_shape: Sequence[int],
    input_dtype: Any = jnp.float32,
) -> TrainState:
  """Initialises a model and its optimizer state.

  Args:
    model: a linen module called as ``model(x, train: bool)``.
    tx: the optimizer.
    seed: seeds the parameter initialisation and ``TrainState.rng`` (through
      different fold-ins, so the two never share random bits).
    input_shape: the shape of one input *including* a batch axis, e.g.
      ``(1, 28, 28, 1)``; channels last.
    input_dtype: dtype of the dummy input used for initialisation.

  Returns:
    A ``TrainState`` at step 0, on the default device, not yet replicated.
  """
  if len(input_shape) < 2:
    raise ValueError(
        f"input_shape must include a batch axis, e.g. (1, H, W, C), got "
        f"{tuple(input_shape)}")
  root = jax.random.key(seed)
  init_key = jax.random.fold_in(root, 0)
  state_key = jax.random.fold_in(root, 1)

  @jax.jit
  def init():
    variables = model.init(
        {"params": init_key, "dropout": init_key},
        jnp.zeros(tuple(input_shape), input_dtype), train=False)
    params = variables["params"]
    batch_stats = variables.get("batch_stats", {})
    return TrainState.create(
        apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats,
        rng=jax.random.key_data(state_key))

  return init()
