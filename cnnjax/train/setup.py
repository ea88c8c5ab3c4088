"""Everything a run needs before its first step, built from a config or given as objects.

``build(config, model=..., data=..., devices=...)`` returns an ``Experiment``:
the model, the data set and its loaders, the length of training, the
learning-rate schedule (built once: the optimizer follows it and the logs
report it), the optimizer, the device layout (``Parallel``) and the compiled
steps. Names in the config are the default way to get a model
(``model.name``, ``models.create``) and a data set (``data.name``); passing
objects skips them:

* ``model``: any ``flax.linen.Module`` called as ``model(x, train=...)``. If it
  has an ``axis_name`` field (the zoo's models do), the engine sets it to the
  strategy's axis (``AXIS`` under pmap/shard_map, ``None`` under jit). With
  ``config.api='nnx'`` the same module (or the one ``model.name`` names)
  trains as a ``cnnjax.nnx`` model (``FromLinen``) with ``nnx.Optimizer``.
  A ``flax.nnx.Module`` (a ``cnnjax.nnx.models.create`` model or the user's
  own, called as ``model(x)`` with ``train()``/``eval()`` modes) trains
  from its own weights and makes the run an NNX run (``config.api='nnx'``).
  The state is a ``TrainState`` or an ``NNXTrainState``; the steps are the
  same functions for both.
* ``data``: any object with ``name``, ``num_classes``, ``image_shape``
  ``(H, W, C)``, ``splits`` (names) and ``loader(split, *, train, batch_size,
  seed, subset=None)`` returning a loader like ``cnnjax.data.make_loader``'s
  (iterable of batches, ``steps_per_epoch``, ``get_state``/``set_state``).
  ``NamedData(config)`` is the default, over ``cnnjax.data``.

* ``task``: what is learnt (``cnnjax.train.tasks``); default the one
  ``config.task`` names. The model gets ``task.num_outputs(info)`` outputs
  (the data set's classes, its regression targets, or pixel classes), and the
  steps call the task for the batch's augmentation, the loss and the metrics.

Nothing here writes to the run directory or compiles a step; the
``Experiment``'s ``train_step``/``eval_step`` compile on first call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from typing import Any, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnnjax.train import optim
from cnnjax.train import tasks as tasks_lib
from cnnjax.train.parallel import Parallel
from cnnjax.train.state import TrainState, create_train_state
from cnnjax.train.steps import eval_step, finalize, train_step


class DataSet(Protocol):
  """What the engine needs from a data set (``NamedData`` is the default one)."""

  name: str
  num_classes: int
  image_shape: tuple[int, ...]
  splits: Collection[str]

  def loader(self, split: str, *, train: bool, batch_size: int, seed: int,
             subset: int | None = None) -> Any:
    """Batches of ``split`` (see ``cnnjax.data.make_loader``)."""


class NamedData:
  """The data set ``config.data`` names: one ``cnnjax.data.Dataset``, resolved once, for every loader."""

  def __init__(self, config: ml_collections.ConfigDict):
    from cnnjax import data as data_lib  # noqa: PLC0415

    self._config = config.data
    self.name = config.data.name
    self.dataset = data_lib.Dataset(
        self.name, data_dir=config.data.data_dir, image_size=config.data.image_size or None,
        crop_scale=tuple(config.data.get("crop_scale", (0.08, 1.0))))
    # A ValueError here for a variable-size data set without data.image_size.
    info = self.dataset.info.resized(config.data.image_size or None)
    self.info = info
    self.num_classes = info.num_classes
    self.image_shape = tuple(info.image_shape)
    self.splits = tuple(info.splits)

  def loader(self, split: str, *, train: bool, batch_size: int, seed: int,
             subset: int | None = None):
    """``cnnjax.data.make_loader`` over the one ``Dataset``, with the config's pipeline."""
    from cnnjax import data as data_lib  # noqa: PLC0415
    c = self._config
    return data_lib.make_loader(
        self.dataset, split, batch_size=batch_size, train=train, seed=seed,
        pipeline=c.pipeline, subset=subset, worker_count=c.worker_count)


def check_splits(config: ml_collections.ConfigDict, data: DataSet) -> None:
  """A ``ValueError`` naming the splits if the config's are not all in ``data``."""
  for split in {config.data.train_split, config.data.eval_split, config.data.test_split}:
    if split not in data.splits:
      raise ValueError(
          f"data set {data.name!r} has no split {split!r}; its splits are "
          f"{sorted(data.splits)} (config keys data.train_split/eval_split/test_split)")


def model_from_config(config: ml_collections.ConfigDict, num_classes: int,
                      axis_name: str | None) -> nn.Module:
  """``models.create(config.model.name, **config.model.kwargs)`` with ``num_classes`` outputs.

  ``num_classes`` is the task's ``num_outputs``: logits of a classifier or of
  every pixel, or regression outputs (``model.kwargs.num_outputs`` may name
  the latter; it must agree).
  """
  from cnnjax import models  # noqa: PLC0415

  entry = models.spec(config.model.name)  # ValueError listing the names.
  fields = set(entry.fields())
  kwargs = dict(config.model.kwargs)
  given = "num_outputs" if "num_outputs" in kwargs and "num_outputs" not in fields else "num_classes"
  if kwargs.get(given, num_classes) != num_classes:
    # Labels would reach num_classes - 1 of the data set: one_hot of a label
    # out of range is all zeros, a silently wrong loss.
    raise ValueError(
        f"model.kwargs.{given}={kwargs[given]!r} does not match data set "
        f"{config.data.name!r} and task {config.get('task', 'classification')!r}, which need "
        f"{num_classes} outputs; remove model.kwargs.{given} (it is taken from the data set) "
        f"or set it to {num_classes}")
  if given == "num_outputs":
    del kwargs["num_outputs"]
  kwargs["num_classes"] = num_classes
  if "axis_name" in fields:
    kwargs["axis_name"] = axis_name
  dtype = jnp.dtype(config.model.dtype)
  if "dtype" in fields:
    kwargs["dtype"] = dtype
  elif dtype != jnp.float32:
    raise ValueError(
        f"model {config.model.name!r} has no dtype field, so model.dtype must be "
        f"'float32', got {config.model.dtype!r}")
  return models.create(config.model.name, **kwargs)


def adapt_model(model: nn.Module, axis_name: str | None) -> nn.Module:
  """``model`` with its ``axis_name`` field (if any) set to the strategy's axis."""
  if not isinstance(model, nn.Module):
    raise TypeError(
        f"model must be a flax.linen.Module instance called as model(x, train=...) or a "
        f"flax.nnx.Module called as model(x), got {type(model).__name__}")
  names = {f.name for f in dataclasses.fields(model)}
  if "axis_name" in names and getattr(model, "axis_name") != axis_name:
    return model.clone(axis_name=axis_name)
  return model


def adapt_nnx_model(model: Any, axis_name: str | None) -> Any:
  """An NNX ``model`` for the strategy.

  A ``cnnjax.nnx`` model (``FromLinen``) gets a copy whose linen module's
  ``axis_name`` is the strategy's, without the ``nnx.Rngs`` it keeps for
  dropout (the steps pass the step's dropout key, as to a linen module): its
  state and checkpoints are those of ``config.api='nnx'`` for the same
  module. Any other ``nnx.Module`` is used as it is (its BatchNorm layers'
  ``axis_name`` is the user's to set).
  """
  from flax import nnx  # noqa: PLC0415

  from cnnjax.nnx.module import FromLinen  # noqa: PLC0415
  if not isinstance(model, FromLinen):
    return model
  copy = nnx.clone(model)
  copy.module = adapt_model(model.module, axis_name)
  copy.rngs = None
  return copy


def is_nnx(model: Any) -> bool:
  """Whether ``model`` is a Flax NNX module (``flax.nnx`` is only imported if it is loaded)."""
  import sys  # noqa: PLC0415
  nnx = sys.modules.get("flax.nnx")
  return nnx is not None and isinstance(model, nnx.Module)


def step_options(config: ml_collections.ConfigDict, num_classes: int,
                 task: Any = None) -> dict[str, Any]:
  """The static keyword arguments of ``train_step`` the config asks for.

  Raises:
    ValueError: a mixing (``mixup_alpha``/``cutmix_alpha``) the task does not allow.
  """
  if task is None:
    task = tasks_lib.from_config(config)
  options: dict[str, Any] = dict(num_classes=num_classes, task=task,
                                 skip_nonfinite=bool(config.skip_nonfinite))
  if config.augment:
    from cnnjax.data import augment as augment_lib  # noqa: PLC0415
    options["augment"] = augment_lib.build(config.augment)
  mixers = task.mixers() if config.mixup_alpha > 0 or config.cutmix_alpha > 0 else {}
  for name in ("mixup", "cutmix"):
    alpha = float(config[f"{name}_alpha"])
    if alpha > 0:
      if name not in mixers:
        raise ValueError(
            f"config {name}_alpha={alpha!r}: the {getattr(task, 'name', type(task).__name__)} "
            f"task allows {sorted(mixers) or 'no mixing'}; set {name}_alpha=0")
      options.update({name: mixers[name], f"{name}_alpha": alpha})
  return options


def compile_steps(parallel: Parallel, options: dict[str, Any],
                  train_fn: Callable = train_step,
                  eval_fn: Callable = eval_step) -> tuple[Callable, Callable]:
  """``train_fn``/``eval_fn`` bound to ``options`` and the strategy's axis, mapped by ``parallel``.

  The two functions are the pluggable part of the engine: any
  ``fn(state, batch, *, axis_name, **options) -> (state, metrics)`` and
  ``fn(state, batch, *, axis_name, task) -> metrics`` returning the task's
  sums (``cnnjax.train.steps``) serve; ``eval_fn`` gets ``options['task']``.
  """
  axis = parallel.axis_name
  task = options.get("task") or tasks_lib.Classification()
  p_train = parallel.train_step(lambda s, b: train_fn(s, b, axis_name=axis, **options))
  p_eval = parallel.eval_step(lambda s, b: eval_fn(s, b, axis_name=axis, task=task))
  return p_train, p_eval


@dataclasses.dataclass
class Experiment:
  """A run's objects before its first step (see ``build``)."""

  config: ml_collections.ConfigDict
  model: Any  # A linen module (also under api='nnx': wrapped when the state is made) or an NNX one.
  data: DataSet
  task: Any
  parallel: Parallel
  train_loader: Any
  eval_loader: Any
  steps_per_epoch: int
  total_steps: int
  num_epochs: float
  learning_rate: optax.Schedule
  tx: optax.GradientTransformation
  train_step: Callable
  eval_step: Callable

  def summarize(self, metrics: list[dict[str, Any]]) -> dict[str, float]:
    """The task's numbers from the host metrics of any number of steps (``steps.finalize``)."""
    return finalize(self.task, metrics)

  def _create_state(self) -> Any:
    return create_state(self.model, self.tx, api=self.config.get("api", "linen"),
                        seed=self.config.seed, input_shape=(1, *self.data.image_shape))

  def init_state(self) -> Any:
    """The step-0 state on the host (numpy), from ``config.seed``: a ``TrainState``, or an
    ``NNXTrainState`` when ``config.api`` is ``'nnx'``."""
    if is_nnx(self.model):  # Its own weights: nothing to compile.
      return jax.device_get(self._create_state())
    return jax.device_get(jax.jit(self._create_state)())

  def abstract_state(self) -> Any:
    """The state's shapes and dtypes (``jax.eval_shape``; nothing allocated)."""
    return jax.eval_shape(self._create_state)

  def test_loader(self):
    """One pass over ``data.test_split``."""
    return self.data.loader(self.config.data.test_split, train=False,
                            batch_size=self.config.eval_batch_size, seed=self.config.seed)


def create_state(model: Any, tx: optax.GradientTransformation, *, api: str, seed: int,
                 input_shape: tuple[int, ...]) -> Any:
  """The step-0 state of ``model``: a linen module's ``TrainState`` (``api='linen'``), or an
  ``NNXTrainState`` (``api='nnx'``) of an NNX module's own weights or of a linen module
  wrapped in ``cnnjax.nnx.FromLinen`` with the weights ``create_train_state`` gives it.

  Call it under ``jax.jit`` or ``jax.eval_shape`` for a linen ``model``.
  """
  if is_nnx(model):
    from cnnjax.train.nnx_state import create_nnx_train_state  # noqa: PLC0415
    return create_nnx_train_state(model, tx, seed=seed)
  if api == "nnx":
    from cnnjax.train.nnx_state import create_nnx_train_state_from_linen  # noqa: PLC0415
    return create_nnx_train_state_from_linen(model, tx, seed=seed, input_shape=input_shape)
  return create_train_state(model, tx, seed=seed, input_shape=input_shape)


def build(config: ml_collections.ConfigDict, *, model: nn.Module | None = None,
          data: DataSet | None = None,
          devices: list[jax.Device] | None = None, task: Any = None) -> Experiment:
  """Checks and builds everything ``config`` (or the given objects) describe; compiles nothing.

  ``task`` defaults to ``tasks.from_config(config)``; its ``num_outputs`` of
  the data set (``data.info`` when it has one, else ``data``) sizes the model.

  Raises:
    ValueError: an unknown strategy, model or data set name, a missing
      split, a batch size the devices do not divide, a ``num_classes`` that
      does not match the data set (``DatasetNotPreparedError`` for a data set
      that is not prepared).
    TypeError: ``model`` is neither a linen nor an NNX module.
  """
  parallel = Parallel(config.strategy, devices)
  parallel.check_batch_size(config.batch_size, "batch_size")
  parallel.check_batch_size(config.eval_batch_size, "eval_batch_size")
  if model is None:
    from cnnjax import models  # noqa: PLC0415
    models.spec(config.model.name)  # An unknown name fails before the data set is read.
  if data is None:
    data = NamedData(config)
  check_splits(config, data)
  if task is None:
    task = tasks_lib.from_config(config)
  # ValueError for a data set without the task's labels (a regression on digits).
  num_outputs = task.num_outputs(getattr(data, "info", data))
  if model is None:
    model = model_from_config(config, num_outputs, parallel.axis_name)
  elif is_nnx(model):
    if config.get("api", "linen") != "nnx":
      with config.unlocked():
        config.api = "nnx"  # Recorded in config.json: the run is an NNX run.
    model = adapt_nnx_model(model, parallel.axis_name)
  else:
    model = adapt_model(model, parallel.axis_name)
  options = step_options(config, num_outputs, task)
  train_loader = data.loader(config.data.train_split, train=True, batch_size=config.batch_size,
                             seed=config.seed, subset=config.data.train_subset)
  eval_loader = data.loader(config.data.eval_split, train=False,
                            batch_size=config.eval_batch_size, seed=config.seed)
  steps_per_epoch = train_loader.steps_per_epoch
  total_steps = (int(config.num_train_steps) if config.num_train_steps > 0
                 else max(1, int(round(config.num_epochs * steps_per_epoch))))
  num_epochs = total_steps / steps_per_epoch
  learning_rate = optim.create_learning_rate_schedule(
      config.schedule, config.optimizer.learning_rate, steps_per_epoch, num_epochs)
  tx = optim.create_optimizer(config.optimizer, config.schedule, steps_per_epoch, num_epochs,
                              learning_rate=learning_rate)
  p_train, p_eval = compile_steps(parallel, options)
  return Experiment(config=config, model=model, data=data, task=task, parallel=parallel,
                    train_loader=train_loader, eval_loader=eval_loader,
                    steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                    num_epochs=num_epochs, learning_rate=learning_rate, tx=tx,
                    train_step=p_train, eval_step=p_eval)
