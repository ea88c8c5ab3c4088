"""The training loop: ``train_and_evaluate(config, workdir)``.

One loop for every experiment, in the shape of the Flax ImageNet example:

1. check everything that can be checked before compiling (config keys and
   names, the model and data set, batch sizes against the devices, the work
   directory);
2. build the loaders (each process reads its shard), the model, the optimizer
   and the state, or restore the newest checkpoint (state and data position);
3. run the mapped ``train_step`` (``cnnjax.train.parallel``); fetch metrics
   to the host every ``log_every_steps`` steps only;
4. at the end of every epoch evaluate on ``data.eval_split`` and save a
   checkpoint (also every ``checkpoint_every_steps`` steps and at the end);
5. evaluate on ``data.test_split`` and write ``summary.json`` and the plots.

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``plots/*.png`` and ``summary.json``. Running again on the same directory
resumes from the newest checkpoint and ends with the same parameters, bit for
bit on CPU, as a run that was never interrupted: the key of every step is
folded from the seed and the step, and the data loader continues with the
batch that followed the checkpoint.

SIGTERM and SIGINT (preemption, Ctrl-C) set a flag checked after every step:
the loop writes a checkpoint at the current step, waits for it, and raises
``Preempted``, whose ``exit_code`` is ``128 + signal`` (143 for SIGTERM, 130
for SIGINT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnnjax.train import config as config_lib
from cnnjax.train import metrics as metrics_lib
from cnnjax.train import optim
from cnnjax.train.checkpoint import Checkpointer, CheckpointMismatchError, abstract_target
from cnnjax.train.parallel import Parallel
from cnnjax.train.state import TrainState, create_train_state
from cnnjax.train.steps import AXIS, eval_step, summarize, train_step

log = logging.getLogger(__name__)


class Preempted(Exception):
  """Training stopped on a signal after writing a checkpoint.

  Attributes:
    signum: the signal received.
    step: the step of the checkpoint written.
    exit_code: ``128 + signum``, the conventional status of a process ended by it.
  """

  def __init__(self, signum: int, step: int):
    self.signum, self.step = signum, step
    self.exit_code = 128 + signum
    super().__init__(
        f"stopped by {signal.Signals(signum).name} at step {step}; a checkpoint of "
        f"step {step} was written: rerun the same command to resume")


class NonFiniteLossError(FloatingPointError):
  """The training loss or its gradient became NaN or Inf."""


@dataclasses.dataclass
class _SignalFlag:
  signum: int | None = None

  def __call__(self, signum, frame):
    del frame
    self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
  """Installs SIGTERM/SIGINT handlers that set a flag (main thread only)."""
  flag = _SignalFlag()
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {s: signal.signal(s, flag) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


def _is_main() -> bool:
  return jax.process_index() == 0


def _barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)


def _prepare_workdir(workdir: str, fresh: bool) -> str:
  """Creates the run directory (moving an old one aside with ``fresh``); checks it is writable."""
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if _is_main():
    if fresh and os.path.isdir(workdir) and os.listdir(workdir):
      aside = f"{workdir}.old-{time.strftime('%Y%m%d-%H%M%S')}"
      os.rename(workdir, aside)
      log.warning("--fresh: moved the previous run %s to %s", workdir, aside)
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f".write-test-{os.getpid()}")
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      raise ValueError(
          f"work directory {workdir} is not writable ({e.strerror or e}); choose "
          f"another with --workdir DIR or fix its permissions") from e
  _barrier("cnnjax-workdir")
  return workdir


def _enable_compilation_cache(path: str) -> None:
  if not path:
    return
  path = os.path.abspath(os.path.expanduser(path))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    log.warning("compilation cache disabled: cannot create %s (%s)", path, e)
    return
  jax.config.update("jax_compilation_cache_dir", path)


def _model_and_info(config: ml_collections.ConfigDict):
  """Checks the model and data set names and builds the model (no compilation)."""
  from cnnjax import data as data_lib  # noqa: PLC0415
  from cnnjax import models  # noqa: PLC0415

  entry = models.spec(config.model.name)  # ValueError listing the names.
  data_dir = config.data.data_dir
  data_lib.ensure_prepared(config.data.name, data_dir=data_dir)  # DatasetNotPreparedError.
  info = data_lib.dataset_info(
      config.data.name, data_dir=data_dir, image_size=config.data.image_size or None)
  for split in {config.data.train_split, config.data.eval_split, config.data.test_split}:
    if split not in info.splits:
      raise ValueError(
          f"data set {config.data.name!r} has no split {split!r}; its splits are "
          f"{sorted(info.splits)} (config keys data.train_split/eval_split/test_split)")
  fields = set(entry.fields())
  kwargs = dict(config.model.kwargs)
  if kwargs.get("num_classes", info.num_classes) != info.num_classes:
    # Labels would reach num_classes - 1 of the data set: one_hot of a label
    # out of range is all zeros, a silently wrong loss.
    raise ValueError(
        f"model.kwargs.num_classes={kwargs['num_classes']!r} does not match data set "
        f"{config.data.name!r}, whose labels are 0..{info.num_classes - 1} "
        f"({info.num_classes} classes); remove model.kwargs.num_classes (it is taken "
        f"from the data set) or set it to {info.num_classes}")
  kwargs["num_classes"] = info.num_classes
  if "axis_name" in fields:
    kwargs["axis_name"] = AXIS
  dtype = jnp.dtype(config.model.dtype)
  if "dtype" in fields:
    kwargs["dtype"] = dtype
  elif dtype != jnp.float32:
    raise ValueError(
        f"model {config.model.name!r} has no dtype field, so model.dtype must be "
        f"'float32', got {config.model.dtype!r}")
  return models.create(config.model.name, **kwargs), info


def _step_options(config: ml_collections.ConfigDict, num_classes: int) -> dict[str, Any]:
  options: dict[str, Any] = dict(num_classes=num_classes,
                                 label_smoothing=float(config.label_smoothing),
                                 skip_nonfinite=bool(config.skip_nonfinite))
  if config.augment or config.mixup_alpha > 0 or config.cutmix_alpha > 0:
    from cnnjax.data import augment as augment_lib  # noqa: PLC0415
    if config.augment:
      options["augment"] = augment_lib.build(config.augment)
    if config.mixup_alpha > 0:
      options.update(mixup=augment_lib.mixup, mixup_alpha=float(config.mixup_alpha))
    if config.cutmix_alpha > 0:
      options.update(cutmix=augment_lib.cutmix, cutmix_alpha=float(config.cutmix_alpha))
  return options


def _loader(config, split: str, *, train: bool, batch_size: int, subset=None):
  from cnnjax import data as data_lib  # noqa: PLC0415
  return data_lib.make_loader(
      config.data.name, split, batch_size=batch_size, train=train, seed=config.seed,
      data_dir=config.data.data_dir, pipeline=config.data.pipeline, subset=subset,
      worker_count=config.data.worker_count, image_size=config.data.image_size or None)


def _evaluate(p_eval, parallel: Parallel, state, loader) -> dict[str, float]:
  outputs = [p_eval(state, parallel.shard_batch(batch)) for batch in loader]
  host = [parallel.host_metrics(m) for m in outputs]
  return summarize(metrics_lib.sum_metrics(host))


def train_and_evaluate(
    config: ml_collections.ConfigDict | Mapping[str, Any],
    workdir: str,
    *,
    fresh: bool = False,
    devices: list[jax.Device] | None = None,
) -> dict[str, Any]:
  """Trains and evaluates a model as ``config`` says; writes the run to ``workdir``.

  Args:
    config: a config from ``experiments/configs`` (see
      ``cnnjax.train.config.base_config`` for every field).
    workdir: the run directory; if it holds a checkpoint, training resumes from
      the newest readable one.
    fresh: start over: move an existing ``workdir`` aside to
      ``<workdir>.old-<time>`` first.
    devices: run on these local devices only (one process); default all.

  Returns:
    The summary also written to ``summary.json``: ``test_loss``,
    ``test_accuracy``, ``steps``, ``epochs``, ``wall_time_s``,
    ``images_per_sec``, ``devices``, ``resumed_from_step`` and more.

  Raises:
    ValueError: a config, model, data set, batch size or work directory
      problem, found before anything is compiled (``DatasetNotPreparedError``
      for an unprepared data set).
    NonFiniteLossError: the loss or its gradient became NaN/Inf (and ``skip_nonfinite`` is off).
    Preempted: SIGTERM/SIGINT arrived; a checkpoint was written.
    CheckpointError: a checkpoint could not be written (e.g. disk full).
    CheckpointMismatchError: ``workdir`` holds a checkpoint of another model
      (a ``ValueError`` naming the differing arrays and their shapes).
  """
  start_time = time.time()
  if not isinstance(config, ml_collections.ConfigDict):
    config = ml_collections.ConfigDict(dict(config))
  config_lib.validate(config)
  config_lib.warn_about_backend(config)
  parallel = Parallel(config.strategy, devices)
  parallel.check_batch_size(config.batch_size, "batch_size")
  parallel.check_batch_size(config.eval_batch_size, "eval_batch_size")
  model, info = _model_and_info(config)
  step_options = _step_options(config, info.num_classes)
  workdir = _prepare_workdir(workdir, fresh)
  _enable_compilation_cache(config.compilation_cache_dir)

  train_loader = _loader(config, config.data.train_split, train=True,
                         batch_size=config.batch_size, subset=config.data.train_subset)
  eval_loader = _loader(config, config.data.eval_split, train=False,
                        batch_size=config.eval_batch_size)
  steps_per_epoch = train_loader.steps_per_epoch
  total_steps = (int(config.num_train_steps) if config.num_train_steps > 0
                 else max(1, int(round(config.num_epochs * steps_per_epoch))))
  num_epochs = total_steps / steps_per_epoch
  learning_rate = optim.create_learning_rate_schedule(
      config.schedule, config.optimizer.learning_rate, steps_per_epoch, num_epochs)
  abstract_state = _abstract_state(config, model, info, steps_per_epoch, num_epochs)

  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              max_to_keep=config.max_to_keep,
                              async_save=config.async_checkpointing)
  try:
    restored = checkpointer.restore(abstract_target(abstract_state.checkpoint_items()))
  except CheckpointMismatchError as e:
    checkpointer.close()
    raise CheckpointMismatchError(f"{e}{_trained_with(workdir, config)}") from None
  # Written once the checkpoint is known to fit: a resume with the wrong config
  # must not overwrite the record of the right one.
  if _is_main():
    with open(os.path.join(workdir, "config.json"), "w") as f:
      json.dump(config_lib.to_dict(config), f, indent=2, sort_keys=True)
  if restored is None:
    host_state = jax.device_get(create_train_state(
        model, abstract_state.tx, seed=config.seed, input_shape=(1, *info.image_shape)))
    start_step, resumed_from = 0, None
  else:
    start_step, items, data_state = restored
    host_state = abstract_state.replace_checkpoint_items(jax.device_get(items))
    train_loader.set_state(data_state)
    resumed_from = start_step
    log.info("resumed from checkpoint step %d in %s", start_step, checkpointer.directory)
    if _is_main():
      metrics_lib.truncate_events(os.path.join(workdir, "metrics.jsonl"), start_step)
  state = parallel.put_state(host_state)
  del host_state

  p_train = parallel.train_step(lambda s, b: train_step(s, b, **step_options))
  p_eval = parallel.eval_step(eval_step)
  writer = metrics_lib.MetricsWriter(workdir, enabled=_is_main(),
                                     tensorboard=config.tensorboard)
  bar = None
  if config.progress_bar and _is_main():
    bar = metrics_lib.progress_bar(total_steps, start_step, f"{config.model.name}/{config.data.name}")
  say = (bar.write if bar is not None else print) if _is_main() else (lambda *_: None)
  if resumed_from is not None:
    say(f"resumed from checkpoint step {resumed_from} in {checkpointer.directory}")

  pending: list[Any] = []  # Device metrics not yet fetched.
  window: list[dict] = []  # Host metrics since the last train log event.
  epoch_window: list[dict] = []
  window_start = time.time()
  train_images = 0
  train_time = 0.0
  last_checkpoint = checkpointer.latest_step()

  def fetch(step: int) -> None:
    """Moves pending device metrics to the host; stops on a NaN/Inf loss."""
    first = step - len(pending) + 1
    host = [parallel.host_metrics(m) for m in pending]
    pending.clear()
    bad = metrics_lib.first_nonfinite(host, first)
    if bad is not None:
      where = (f"the last good checkpoint is step {last_checkpoint} in {checkpointer.directory}"
               if last_checkpoint is not None else "no checkpoint was written yet")
      raise NonFiniteLossError(
          f"the training loss or its gradient became NaN/Inf at step {bad}; {where}. Lower "
          f"optimizer.learning_rate, set optimizer.grad_clip_norm, or set "
          f"skip_nonfinite=True to skip such updates.")
    window.extend(host)
    epoch_window.extend(host)

  def save(step: int) -> None:
    nonlocal last_checkpoint
    fetch(step)  # Never checkpoint a NaN state.
    items = parallel.host_state(state).checkpoint_items()
    checkpointer.save(step, items, train_loader.get_state())
    last_checkpoint = step

  history: dict[str, Any] = {}
  try:
    with _stop_on_signals() as stop:
      train_iter = iter(train_loader)
      for step in range(start_step + 1, total_steps + 1):
        batch = parallel.shard_batch(next(train_iter))
        state, step_metrics = p_train(state, batch)
        pending.append(step_metrics)
        if bar is not None:
          bar.update(1)
        if step % config.log_every_steps == 0 or step == total_steps:
          fetch(step)
          elapsed = time.time() - window_start
          images = len(window) * config.batch_size
          if step - len(window) > start_step:  # Leave the compiling window out.
            train_images += images
            train_time += elapsed
          event = writer.write_summed(step, "train", window,
                                      images_per_sec=images / max(elapsed, 1e-9),
                                      learning_rate=float(learning_rate(step - 1)),
                                      epoch=step / steps_per_epoch)
          if bar is not None:
            bar.set_postfix(loss=f"{event['loss']:.4f}", acc=f"{event['accuracy']:.3f}",
                            img_s=f"{event['images_per_sec']:.0f}")
          window.clear()
          window_start = time.time()
        epoch_end = step % steps_per_epoch == 0
        if epoch_end or step == total_steps:
          fetch(step)
          epoch = int(np.ceil(step / steps_per_epoch))
          train_summary = summarize(metrics_lib.sum_metrics(epoch_window)) if epoch_window else {}
          epoch_window.clear()
          line = f"epoch {epoch}/{int(np.ceil(num_epochs))} step {step}"
          if train_summary:
            line += f": train loss {train_summary['loss']:.4f} acc {train_summary['accuracy']:.4f}"
            history["train"] = train_summary
          if epoch % config.eval_every_epochs == 0 or step == total_steps:
            result = _evaluate(p_eval, parallel, state, eval_loader)
            writer.write(step, "eval", dict(result, epoch=step / steps_per_epoch))
            line += f" | {config.data.eval_split} loss {result['loss']:.4f} acc {result['accuracy']:.4f}"
            if step == total_steps:
              history["final_eval"] = result
          say(line)
        checkpoint_due = (epoch_end or step == total_steps or (
            config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0))
        if checkpoint_due:
          save(step)
        if stop.signum is not None:
          if not checkpoint_due:
            save(step)
          checkpointer.wait()
          raise Preempted(stop.signum, step)
      if pending:
        fetch(total_steps)
    checkpointer.wait()
  finally:
    if bar is not None:
      bar.close()
    writer.close()
    with contextlib.suppress(Exception):
      checkpointer.close()

  if config.data.test_split == config.data.eval_split and "final_eval" in history:
    test = history["final_eval"]  # The last evaluation ran on the final state.
  else:
    test = _evaluate(p_eval, parallel, state, _loader(
        config, config.data.test_split, train=False, batch_size=config.eval_batch_size))
  writer = metrics_lib.MetricsWriter(workdir, enabled=_is_main())
  writer.write(total_steps, "test", test)
  say(f"test ({config.data.test_split}) loss {test['loss']:.4f} accuracy {test['accuracy']:.4f}")

  wall = time.time() - start_time
  summary = {
      "model": config.model.name,
      "dataset": config.data.name,
      "test_split": config.data.test_split,
      "test_loss": test["loss"],
      "test_accuracy": test["accuracy"],
      "test_count": test["count"],
      "train_loss": history.get("train", {}).get("loss"),
      "train_accuracy": history.get("train", {}).get("accuracy"),
      "steps": total_steps,
      "epochs": num_epochs,
      "steps_per_epoch": steps_per_epoch,
      "batch_size": config.batch_size,
      "resumed_from_step": resumed_from,
      "wall_time_s": wall,
      "images_per_sec": (train_images / train_time) if train_time > 0 else None,
      "strategy": config.strategy,
      "process_count": jax.process_count(),
      "devices": [str(d) for d in parallel.devices],
      "checkpoints": checkpointer.all_steps(),
  }
  if _is_main():
    if config.plots:
      metrics_lib.plot_run(workdir, config)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
  _barrier("cnnjax-end")
  return summary


def _trained_with(workdir: str, config: ml_collections.ConfigDict) -> str:
  """`` It was trained with model.name=...`` from the run's ``config.json``, if readable."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      recorded = json.load(f)
    model, data = recorded["model"], recorded["data"]
  except (OSError, ValueError, KeyError, TypeError):
    return ""
  return (f" {os.path.join(workdir, 'config.json')} says it was trained with "
          f"model.name={model.get('name')!r}, model.kwargs={model.get('kwargs')!r}, "
          f"data.name={data.get('name')!r}; this config has model.name="
          f"{config.model.name!r}, model.kwargs={config_lib.to_dict(config.model.kwargs)!r}, "
          f"data.name={config.data.name!r}.")


def abstract_train_state(
    config: ml_collections.ConfigDict, *, steps_per_epoch: int = 1, num_epochs: float = 1.0
) -> TrainState:
  """The ``TrainState`` a config trains, as ``jax.ShapeDtypeStruct``s (``jax.eval_shape``).

  Nothing is allocated or compiled; the optimizer's schedule does not change
  the state's structure, so the defaults of ``steps_per_epoch`` and
  ``num_epochs`` serve for restoring.
  """
  model, info = _model_and_info(config)
  return _abstract_state(config, model, info, steps_per_epoch, num_epochs)


def _abstract_state(config, model, info, steps_per_epoch: int, num_epochs: float) -> TrainState:
  tx = optim.create_optimizer(config.optimizer, config.schedule, steps_per_epoch, num_epochs)
  return jax.eval_shape(lambda: create_train_state(
      model, tx, seed=config.seed, input_shape=(1, *info.image_shape)))


def restore_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    sharding: jax.sharding.Sharding | None = None,
) -> tuple[int, TrainState, dict[str, Any]]:
  """Reads the newest readable checkpoint of a run, on any devices.

  Args:
    config: the run's config (for the state's structure).
    workdir: the run directory.
    sharding: where the arrays go; default the first local device, so a
      checkpoint written on N devices loads on one CPU.

  Returns:
    ``(step, state, data_state)``: a ``TrainState`` with ``apply_fn`` and
    ``tx`` set, and the training loader's position.
  """
  abstract = abstract_train_state(config)
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                              async_save=False)
  try:
    restored = checkpointer.restore(abstract_target(abstract.checkpoint_items(), sharding))
  finally:
    checkpointer.close()
  if restored is None:
    raise ValueError(f"no checkpoint in {checkpointer.directory}")
  step, items, data_state = restored
  return step, abstract.replace_checkpoint_items(items), data_state
