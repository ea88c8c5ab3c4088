"""The training state of a Flax NNX model: ``NNXTrainState``, the NNX form of ``TrainState``.

The engine's steps (``cnnjax.train.steps``) ask the state for two things —
``state.logits(images)`` and ``state.train_on(images, loss_fn, key, reduce)``
— so the same pure steps, the same strategies (``pmap``, ``shard_map``,
``jit``), the same checkpoints and the same run directory serve linen and NNX
models. ``NNXTrainState`` answers them the NNX way:

* it is a pytree of ``nnx.State`` objects (``nnx.split`` of the model into
  ``nnx.Param``, ``nnx.BatchStat`` and the rest, and of an
  ``nnx.Optimizer``), the two graph definitions being static fields, so it passes
  through ``jax.pmap``/``shard_map``/``jit`` whole and is donated between steps;
* ``train_on`` merges the model and the optimizer, differentiates the loss
  with ``nnx.value_and_grad`` (the ``nnx.Param`` variables), averages the gradients and
  the running statistics over the device axis, calls
  ``nnx.Optimizer.update`` and splits the result again;
* its checkpoint holds ``nnx.to_pure_dict`` of each part: ``params``
  and ``batch_stats`` are the linen collections of the same model
  (``cnnjax.nnx.FromLinen`` mirrors linen's names), so ``load_run``,
  ``cnnjax.nnx.from_linen`` and the checkpoint's shape check work on NNX
  runs unchanged.

A cnnjax model (``cnnjax.nnx.FromLinen``) is called with
``use_running_average`` and the step's dropout key, so one NNX step computes
what one linen step computes; any other ``nnx.Module`` is switched with
``model.train()``/``model.eval()`` and called as ``model(images)``, drawing
dropout keys from its own ``nnx.Rngs`` (whose counters the state and the
checkpoint carry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from cnnjax.nnx.module import FromLinen, from_linen

PyTree = Any

#: The parts of an ``NNXTrainState`` a checkpoint holds (each a pure dict).
NNX_CHECKPOINT_FIELDS = ("step", "params", "batch_stats", "other", "opt_state", "rng")


def call(model: nnx.Module, images: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
  """``model``'s output in training or evaluation mode.

  A ``FromLinen`` model gets ``use_running_average=not train`` and ``key``
  for dropout (as the linen step passes ``train`` and ``rngs``); any other
  ``nnx.Module`` is switched with ``train()``/``eval()`` and called on
  ``images`` alone.
  """
  if isinstance(model, FromLinen):
    return model(images, use_running_average=not train, rngs=key if train else None)
  if train:
    model.train()
  else:
    model.eval()
  return model(images)


def _is_key(x: Any) -> bool:
  dtype = getattr(x, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)


def _key_data(tree: PyTree) -> PyTree:
  """Typed PRNG keys (``nnx.Rngs`` streams) as their ``uint32`` data: arrays every layout takes."""
  return jax.tree_util.tree_map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


class NNXTrainState(struct.PyTreeNode):
  """The state of an NNX model's training: the ``TrainState`` interface over ``nnx.State`` objects.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: ``nnx.State`` of the model's ``nnx.Param`` variables.
    batch_stats: ``nnx.State`` of its ``nnx.BatchStat`` variables (running statistics).
    other: ``nnx.State`` of every other variable (``nnx.Rngs`` counters; keys
      held as ``uint32`` key data, see ``key_impls``).
    opt_state: ``nnx.State`` of the ``nnx.Optimizer`` (its optax state and count).
    rng: uint32 key data of the run's key (``TrainState.rng``'s role: the
      step's key is folded from it and the step).
    graphdef, opt_graphdef: ``nnx.split``'s graph definitions (static).
    key_impls: for each leaf of ``other``, the PRNG implementation of a key
      held as data, ``None`` for an ordinary array (static).
  """

  step: jax.Array
  params: nnx.State
  batch_stats: nnx.State
  other: nnx.State
  opt_state: nnx.State
  rng: jax.Array
  graphdef: Any = struct.field(pytree_node=False)
  opt_graphdef: Any = struct.field(pytree_node=False)
  key_impls: tuple[Any, ...] = struct.field(pytree_node=False, default=())

  @classmethod
  def capture(cls, model: nnx.Module, optimizer: nnx.Optimizer, *, step: Any,
              rng: jax.Array) -> NNXTrainState:
    """The state of ``model`` and ``optimizer`` (their current values)."""
    graphdef, params, batch_stats, other = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    opt_graphdef, opt_state = nnx.split(optimizer)
    impls = tuple(jax.random.key_impl(x) if _is_key(x) else None
                  for x in jax.tree_util.tree_leaves(other))
    return cls(step=jnp.asarray(step, jnp.int32), params=params, batch_stats=batch_stats,
               other=_key_data(other), opt_state=opt_state, rng=rng, graphdef=graphdef,
               opt_graphdef=opt_graphdef, key_impls=impls)

  def key(self) -> jax.Array:
    """The typed PRNG key wrapped around ``rng``."""
    return jax.random.wrap_key_data(self.rng)

  def model(self) -> nnx.Module:
    """A new model object holding this state's values."""
    leaves, tree = jax.tree_util.tree_flatten(self.other)
    if len(leaves) == len(self.key_impls):
      leaves = [x if impl is None else jax.random.wrap_key_data(x, impl=impl)
                for x, impl in zip(leaves, self.key_impls)]
    other = jax.tree_util.tree_unflatten(tree, leaves)
    return nnx.merge(self.graphdef, self.params, self.batch_stats, other, copy=True)

  def logits(self, images: jax.Array) -> jax.Array:
    """The model's output on ``images`` ``(B, H, W, C)`` in evaluation mode."""
    return call(self.model(), images, train=False)

  def train_on(self, images: jax.Array, loss_fn: Callable[[jax.Array], jax.Array],
               dropout_key: jax.Array, reduce: Callable[[PyTree], PyTree]
               ) -> tuple[NNXTrainState, jax.Array, PyTree]:
    """One optimizer update, ``(new_state, logits, grads)``, as ``TrainState.train_on``.

    The model runs in training mode on ``images`` ``(B, H, W, C)``
    (``dropout_key`` serves a ``FromLinen`` model); ``reduce`` averages the
    gradients (an ``nnx.State``) and the running statistics over the devices.
    """
    model = self.model()
    optimizer = nnx.merge(self.opt_graphdef, self.opt_state, copy=True)

    def loss(model):
      logits = call(model, images, train=True, key=dropout_key)
      return loss_fn(logits), logits

    (_, logits), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    grads = reduce(grads)
    nnx.update(model, reduce(nnx.state(model, nnx.BatchStat)))
    optimizer.update(model, grads)
    new = NNXTrainState.capture(model, optimizer, step=self.step + 1, rng=self.rng)
    return new.replace(graphdef=self.graphdef, opt_graphdef=self.opt_graphdef), logits, grads

  def variables(self) -> dict[str, PyTree]:
    """The linen collections ``{'params': ..., 'batch_stats': ...}`` (pure dicts)."""
    out = {"params": nnx.to_pure_dict(self.params)}
    stats = nnx.to_pure_dict(self.batch_stats)
    if stats:
      out["batch_stats"] = stats
    return out

  def checkpoint_items(self) -> dict[str, PyTree]:
    """The parts saved in a checkpoint, by name: pure dicts (``nnx.to_pure_dict``)."""
    items = {name: getattr(self, name) for name in NNX_CHECKPOINT_FIELDS}
    for name in ("params", "batch_stats", "other", "opt_state"):
      items[name] = nnx.to_pure_dict(items[name])
    return items

  def replace_checkpoint_items(self, items: dict[str, PyTree]) -> NNXTrainState:
    """This state with the values of ``items`` (see ``checkpoint_items``)."""
    missing = set(NNX_CHECKPOINT_FIELDS) - set(items)
    if missing:
      raise ValueError(
          f"checkpoint items must hold {list(NNX_CHECKPOINT_FIELDS)}, missing {sorted(missing)}")
    parts = {}
    for name in ("params", "batch_stats", "other", "opt_state"):
      state = jax.tree_util.tree_map(lambda x: x, getattr(self, name))  # A copy to fill.
      nnx.replace_by_pure_dict(state, items[name])
      parts[name] = state
    return self.replace(step=items["step"], rng=items["rng"], **parts)


def create_nnx_train_state(model: nnx.Module, tx: optax.GradientTransformation, *,
                           seed: int) -> NNXTrainState:
  """The state of training ``model`` (its current weights) with ``tx`` from step 0.

  ``seed`` gives the run's key (``fold_in(key(seed), 1)``, as
  ``create_train_state``); the weights are the model's own.
  """
  rng = jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
  return NNXTrainState.capture(model, nnx.Optimizer(model, tx, wrt=nnx.Param), step=0, rng=rng)


def create_nnx_train_state_from_linen(
    module: nn.Module, tx: optax.GradientTransformation, *, seed: int,
    input_shape: tuple[int, ...], input_dtype: Any = jnp.float32) -> NNXTrainState:
  """A linen module as a ``cnnjax.nnx.FromLinen`` model, initialised as ``create_train_state`` does.

  The weights are ``module.init``'s with the key ``create_train_state`` uses
  for ``seed``, so an NNX run and a linen run of one config start from the
  same parameters. Trace it (``jax.jit``, ``jax.eval_shape``): the
  ``FromLinen``'s own initial values are overwritten and never computed.

  Args:
    module: a linen module called as ``module(x, train=...)``.
    tx: the optimizer.
    seed: as ``create_train_state``'s.
    input_shape: one input's shape with a batch axis, e.g. ``(1, 28, 28, 1)``.
    input_dtype: its dtype.
  """
  root = jax.random.key(seed)
  init_key = jax.random.fold_in(root, 0)
  sample = jnp.zeros(tuple(input_shape), input_dtype)
  variables = module.init({"params": init_key, "dropout": init_key}, sample, train=False)
  model = FromLinen(module, jax.ShapeDtypeStruct(sample.shape, sample.dtype),
                    rngs=nnx.Rngs(params=init_key))
  from_linen(model, {k: v for k, v in variables.items() if k in ("params", "batch_stats")})
  return create_nnx_train_state(model, tx, seed=seed)
