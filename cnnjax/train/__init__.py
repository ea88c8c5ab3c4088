"""Training: state, pure steps under pmap/shard_map/jit, optimizers, checkpoints, the loop.

* ``TrainState``, ``create_train_state`` (``state``); ``NNXTrainState``,
  ``create_nnx_train_state`` (``nnx_state``): the same for Flax NNX models
  (``config.api='nnx'``), trained by the same steps
* ``AXIS``, ``train_step``, ``eval_step``, ``summarize`` (``steps``): pure
  steps, with collectives over ``AXIS = 'batch'`` or for the global batch
* ``Parallel`` (``parallel``): runs them under ``jax.pmap``, ``jax.shard_map``
  or ``jax.jit`` with shardings
* ``create_optimizer``, ``create_learning_rate_schedule``, ``decay_mask`` (``optim``)
* ``Checkpointer`` (``checkpoint``): orbax checkpoints of state and data position
* ``MetricsWriter`` (``metrics``): ``metrics.jsonl``, plots
* ``base_config``, ``validate`` (``config``): the config schema
* ``train_and_evaluate`` (``loop``): the experiment runner's library function,
  over the objects ``setup.build`` makes and the actions of ``periodic``
* ``load_run``, ``restore_checkpoint``, ``read_config`` (``runs``): a trained
  run read back on any devices
* ``fit`` (``transfer``): a few steps of the engine's step on in-memory arrays
* ``distributed.initialize(config)``: joins a multi-process run with the
  timeouts of ``config.distributed``

Every name is imported from its submodule on first use (PEP 562): a linen
run loads neither ``flax.nnx`` nor ``cnnjax.nnx``, and a command line whose
config is wrong fails before orbax, TFDS and the loop are imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
  from cnnjax.train.checkpoint import (
      CheckpointError,
      Checkpointer,
      CheckpointMismatchError,
      abstract_target,
  )
  from cnnjax.train.config import base_config, validate
  from cnnjax.train.loop import NonFiniteLossError, Preempted, train_and_evaluate
  from cnnjax.train.metrics import MetricsWriter
  from cnnjax.train.nnx_state import NNXTrainState, create_nnx_train_state
  from cnnjax.train.optim import create_learning_rate_schedule, create_optimizer, decay_mask
  from cnnjax.train.parallel import Parallel
  from cnnjax.train.runs import Run, load_run, read_config, restore_checkpoint
  from cnnjax.train.state import TrainState, create_train_state
  from cnnjax.train.steps import AXIS, eval_step, summarize, train_step
  from cnnjax.train.transfer import fit, frozen_apply

#: Each public name and the submodule that defines it, imported on first use.
_LAZY = {
    **dict.fromkeys(["CheckpointError", "Checkpointer", "CheckpointMismatchError",
                     "abstract_target"], "cnnjax.train.checkpoint"),
    **dict.fromkeys(["base_config", "validate"], "cnnjax.train.config"),
    **dict.fromkeys(["NonFiniteLossError", "Preempted", "train_and_evaluate"],
                    "cnnjax.train.loop"),
    "MetricsWriter": "cnnjax.train.metrics",
    **dict.fromkeys(["NNXTrainState", "create_nnx_train_state"], "cnnjax.train.nnx_state"),
    **dict.fromkeys(["create_learning_rate_schedule", "create_optimizer", "decay_mask"],
                    "cnnjax.train.optim"),
    "Parallel": "cnnjax.train.parallel",
    **dict.fromkeys(["Run", "load_run", "read_config", "restore_checkpoint"],
                    "cnnjax.train.runs"),
    **dict.fromkeys(["TrainState", "create_train_state"], "cnnjax.train.state"),
    **dict.fromkeys(["AXIS", "eval_step", "summarize", "train_step"], "cnnjax.train.steps"),
    **dict.fromkeys(["fit", "frozen_apply"], "cnnjax.train.transfer"),
}

__all__ = sorted(_LAZY)


#: The submodules, reachable as attributes (``cnnjax.train.setup``) after ``import cnnjax.train``.
_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__))


def __getattr__(name: str) -> Any:
  if name in _LAZY:
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")  # binds the attribute itself
  raise AttributeError(f"module 'cnnjax.train' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__) | set(_SUBMODULES))
