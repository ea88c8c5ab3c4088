"""Training: state, pure steps under pmap/shard_map, optimizers, checkpoints, the loop.

* ``TrainState``, ``create_train_state`` (``state``)
* ``AXIS``, ``train_step``, ``eval_step``, ``summarize`` (``steps``): pure
  per-device steps with collectives over ``AXIS = 'batch'``
* ``Parallel`` (``parallel``): runs them under ``jax.pmap`` or ``jax.shard_map``
* ``create_optimizer``, ``create_learning_rate_schedule``, ``decay_mask`` (``optim``)
* ``Checkpointer`` (``checkpoint``): orbax checkpoints of state and data position
* ``MetricsWriter`` (``metrics``): ``metrics.jsonl``, plots
* ``base_config``, ``validate`` (``config``): the config schema
* ``train_and_evaluate`` (``loop``): the experiment runner's library function
* ``distributed.initialize(config)``: joins a multi-process run with the
  timeouts of ``config.distributed``
"""

from cnnjax.train.checkpoint import (
    CheckpointError,
    Checkpointer,
    CheckpointMismatchError,
    abstract_target,
)
from cnnjax.train.config import base_config, validate
from cnnjax.train.loop import NonFiniteLossError, Preempted, train_and_evaluate
from cnnjax.train.metrics import MetricsWriter
from cnnjax.train.optim import create_learning_rate_schedule, create_optimizer, decay_mask
from cnnjax.train.parallel import Parallel
from cnnjax.train.state import TrainState, create_train_state
from cnnjax.train.steps import AXIS, eval_step, summarize, train_step

__all__ = [
    "AXIS",
    "CheckpointError",
    "CheckpointMismatchError",
    "Checkpointer",
    "MetricsWriter",
    "NonFiniteLossError",
    "Parallel",
    "Preempted",
    "TrainState",
    "abstract_target",
    "base_config",
    "create_learning_rate_schedule",
    "create_optimizer",
    "create_train_state",
    "decay_mask",
    "eval_step",
    "summarize",
    "train_and_evaluate",
    "train_step",
    "validate",
]
