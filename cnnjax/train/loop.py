"""The training loop: ``train_and_evaluate(config, workdir, *, model=None, data=None, task=None)``.

One loop for every experiment, in the shape of the Flax ImageNet example:

1. check and build everything before compiling (``cnnjax.train.setup``: the
   config, the model and data set — from their names, or the objects given —,
   batch sizes against the devices, the loaders, the schedule and optimizer,
   the mapped steps);
2. if the run directory holds a finished run, say so and stop, changing
   nothing on disk; else restore the newest checkpoint (state and data
   position) or initialise the state;
3. ``train``: run the step, then the periodic actions that are due
   (``cnnjax.train.periodic``: log every ``log_every_steps``, one step late;
   evaluate at epoch ends; checkpoint every ``checkpoint_every_epochs`` epochs
   and every ``checkpoint_every_steps``);
4. evaluate on ``data.test_split`` and write ``summary.json`` and the plots
   (``cnnjax.train.runs`` owns the run directory).

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``plots/*.png`` and ``summary.json``. Running again on the same directory
does nothing if the run finished (``run already finished at step N``), and
otherwise resumes from the newest checkpoint and ends with the same parameters, bit for
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
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from cnnjax import _cache
from cnnjax.train import config as config_lib
from cnnjax.train import metrics as metrics_lib
from cnnjax.train import periodic, runs, setup
from cnnjax.train.checkpoint import Checkpointer, CheckpointMismatchError, abstract_target
from cnnjax.train.periodic import NonFiniteLossError
from cnnjax.train.runs import abstract_train_state, restore_checkpoint

__all__ = ["NonFiniteLossError", "Preempted", "abstract_train_state", "restore_checkpoint",
           "train", "train_and_evaluate"]

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


def _enable_compilation_cache(path: str) -> None:
  """``cnnjax._cache.enable_compilation_cache`` in ``config.compilation_cache_dir`` ('' = off)."""
  if not path:
    return
  try:
    _cache.enable_compilation_cache(os.path.expanduser(path))
  except OSError as e:
    log.warning("compilation cache disabled: cannot create %s (%s)", path, e)


def train(exp: setup.Experiment, state: Any, start_step: int, host: periodic.HostMetrics,
          actions: list[Any], save: periodic.SaveCheckpoint, stop: _SignalFlag) -> Any:
  """Steps ``start_step + 1 .. exp.total_steps``; after each, the periodic actions due.

  The step's metrics stay on the device (``host``) until an action fetches
  them; work an action deferred to the next step (the train event) runs once
  that step is queued. On SIGTERM/SIGINT (``stop``) the deferred work runs, the
  state is checkpointed (unless it was at this step already) and ``Preempted``
  raised.
  """
  batches = iter(exp.train_loader)
  for step in range(start_step + 1, exp.total_steps + 1):
    state, metrics = exp.train_step(state, exp.parallel.shard_batch(next(batches)))
    host.add(step, metrics)  # runs the work deferred to this point (the last train event)
    for action in actions:
      if action.due(step):
        action.run(step, state)
    if stop.signum is not None:
      host.run_deferred()
      if save.saved_at != step:
        save.run(step, state)
      save.checkpointer.wait()
      raise Preempted(stop.signum, step)
  return state


def _restore_or_init(exp: setup.Experiment, workdir: str, checkpointer: Checkpointer):
  """``(host_state, start_step)``: the newest checkpoint's, or step 0's; writes ``config.json``."""
  abstract = exp.abstract_state()
  runs.check_api(workdir, exp.config)
  try:
    restored = checkpointer.restore(abstract_target(abstract.checkpoint_items()))
  except CheckpointMismatchError as e:
    raise CheckpointMismatchError(f"{e}{runs.trained_with(workdir, exp.config)}") from None
  # Written once the checkpoint is known to fit: a resume with the wrong config
  # must not overwrite the record of the right one.
  runs.write_config(workdir, exp.config)
  if restored is None:
    return exp.init_state(), 0
  step, items, data_state = restored
  exp.train_loader.set_state(data_state)
  log.info("resumed from checkpoint step %d in %s", step, checkpointer.directory)
  if runs.is_main():
    metrics_lib.truncate_events(os.path.join(workdir, "metrics.jsonl"), step)
  return abstract.replace_checkpoint_items(jax.device_get(items)), step


def train_and_evaluate(
    config: ml_collections.ConfigDict | Mapping[str, Any],
    workdir: str,
    *,
    model: Any = None,
    data: setup.DataSet | None = None,
    task: Any = None,
    fresh: bool = False,
    devices: list[jax.Device] | None = None,
) -> dict[str, Any]:
  """Trains and evaluates a model as ``config`` says; writes the run to ``workdir``.

  Example, a model that is in no registry::

    summary = train_and_evaluate(config, 'runs/mine', model=MyNet(num_classes=10))

  Args:
    config: a config from ``experiments/configs`` (see
      ``cnnjax.train.config.base_config`` for every field).
    workdir: the run directory; if it holds a checkpoint, training resumes from
      the newest readable one; if it holds a finished run, nothing happens.
    model: a ``flax.linen.Module`` called as ``model(x, train=...)`` with the
      data set's number of logits, or a ``flax.nnx.Module`` (trained from its
      own weights, which it holds at the end: the run is an NNX run);
      default ``config.model`` from the registry (as a ``cnnjax.nnx`` model
      when ``config.api='nnx'``).
    data: a data set object (``cnnjax.train.setup.DataSet``); default
      ``config.data`` through ``cnnjax.data``.
    task: what is learnt, a ``cnnjax.train.tasks`` object or one with the
      same methods; default the one ``config.task`` names.
    fresh: start over: move an existing ``workdir`` aside to
      ``<workdir>.old-<time>`` first.
    devices: run on these local devices only (one process); default all.

  Returns:
    The summary also written to ``summary.json``: ``test_<key>`` for every
    key of ``task.summary_keys`` (``test_loss``, ``test_accuracy`` for
    classification; ``test_mae``, ``test_rmse``, ``test_r2`` for regression;
    ``test_pixel_accuracy``, ``test_mean_iou`` for segmentation), ``task``,
    ``primary_metric``, ``steps``, ``epochs``, ``wall_time_s``,
    ``images_per_sec``, ``devices``, ``resumed_from_step`` and more. For a
    finished run, the summary already on disk.

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
  exp = setup.build(config, model=model, data=data, devices=devices, task=task)
  if not fresh:
    try:
      finished = runs.finished_summary(workdir, exp.total_steps,
                                        exp.abstract_state().checkpoint_items())
    except CheckpointMismatchError as e:
      where = os.path.abspath(os.path.expanduser(workdir))
      raise CheckpointMismatchError(f"{e}{runs.trained_with(where, config)}") from None
    if finished is not None:
      if runs.is_main():
        print(runs.finished_message(finished))
      return finished
  workdir = runs.prepare_workdir(workdir, fresh)
  _enable_compilation_cache(config.compilation_cache_dir)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"),
                              max_to_keep=config.max_to_keep,
                              async_save=config.async_checkpointing)
  try:
    host_state, start_step = _restore_or_init(exp, workdir, checkpointer)
  except BaseException:
    checkpointer.close()
    raise
  state = exp.parallel.put_state(host_state)
  del host_state
  state, history, images_per_sec = _run_training(exp, workdir, checkpointer, state, start_step)
  test = _test(exp, workdir, state, history)
  summary = _summary(exp, test, history, images_per_sec, start_step, checkpointer,
                     time.time() - start_time)
  if runs.is_main():
    if config.plots:
      metrics_lib.plot_run(workdir, config, keys=exp.task.plot_keys)
    runs.write_json(workdir, "summary.json", summary)
  runs.barrier("cnnjax-end")
  if setup.is_nnx(model):
    _update_nnx_model(model, exp.parallel.host_state(state))
  return summary


def _update_nnx_model(model: Any, host_state: Any) -> None:
  """Puts the trained weights into the NNX ``model`` the caller passed (NNX objects are mutable)."""
  from flax import nnx  # noqa: PLC0415
  trained = host_state.model()
  values = (nnx.state(trained, nnx.Param), nnx.state(trained, nnx.BatchStat))
  nnx.update(model, *jax.tree_util.tree_map(jax.numpy.asarray, values))


def _run_training(exp: setup.Experiment, workdir: str, checkpointer: Checkpointer, state: Any,
                  start_step: int) -> tuple[Any, dict[str, Any], float | None]:
  """Builds the periodic actions around ``train``; closes the writers and the checkpointer."""
  config = exp.config
  writer = metrics_lib.MetricsWriter(workdir, enabled=runs.is_main(),
                                     tensorboard=config.tensorboard)
  console = periodic.ProgressBar(config.progress_bar and runs.is_main(), exp.total_steps,
                                 start_step, f"{config.model.name}/{config.data.name}",
                                 quiet=not runs.is_main())
  if start_step:
    console.say(f"resumed from checkpoint step {start_step} in {checkpointer.directory}")
  save = None
  host = periodic.HostMetrics(exp.parallel.host_metrics, lambda: save.where(),
                              exp.parallel.max_in_flight)
  save = periodic.SaveCheckpoint(exp, checkpointer, host)
  log_train = periodic.LogTrain(config.log_every_steps, exp, start_step, host, writer, console)
  epoch_end = periodic.EndOfEpoch(exp, host, writer, console, log_train)
  try:
    with _stop_on_signals() as stop:
      state = train(exp, state, start_step, host,
                    [console, log_train, epoch_end, save], save, stop)
      host.fetch(exp.total_steps)
    checkpointer.wait()
  finally:
    console.close()
    writer.close()
    with contextlib.suppress(Exception):
      checkpointer.close()
  return state, epoch_end.history, log_train.images_per_sec


def _test(exp: setup.Experiment, workdir: str, state: Any,
          history: dict[str, Any]) -> dict[str, float]:
  """The test split's metrics (the final evaluation's when the splits are the same), logged."""
  config = exp.config
  if config.data.test_split == config.data.eval_split and "final_eval" in history:
    test = history["final_eval"]  # The last evaluation ran on the final state.
  else:
    test = periodic.evaluate(exp, state, exp.test_loader())
  writer = metrics_lib.MetricsWriter(workdir, enabled=runs.is_main())
  writer.write(exp.total_steps, "test", test)
  if runs.is_main():
    shown = " ".join(f"{key} {test[key]:.4f}" for key in exp.task.summary_keys)
    print(f"test ({config.data.test_split}) {shown}")
  return test


def _summary(exp: setup.Experiment, test: dict[str, float], history: dict[str, Any],
             images_per_sec: float | None, start_step: int, checkpointer: Checkpointer,
             wall_time_s: float) -> dict[str, Any]:
  config, keys = exp.config, exp.task.summary_keys
  train = history.get("train", {})
  return {
      "model": config.model.name,
      "dataset": config.data.name,
      "test_split": config.data.test_split,
      **{f"test_{key}": test[key] for key in keys},
      "test_count": test["count"],
      **{f"train_{key}": train.get(key) for key in keys},
      "task": getattr(exp.task, "name", type(exp.task).__name__),
      "primary_metric": f"test_{exp.task.primary}",
      "higher_is_better": bool(exp.task.higher_is_better),
      "steps": exp.total_steps,
      "epochs": exp.num_epochs,
      "steps_per_epoch": exp.steps_per_epoch,
      "batch_size": config.batch_size,
      "resumed_from_step": start_step or None,
      "wall_time_s": wall_time_s,
      "images_per_sec": images_per_sec,
      "strategy": config.strategy,
      "process_count": jax.process_count(),
      "devices": [str(d) for d in exp.parallel.devices],
      "checkpoints": checkpointer.all_steps(),
  }
