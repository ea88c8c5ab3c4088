"""The periodic work of the training loop, as small objects in the way of ``clu.periodic_actions``.

The loop (``cnnjax.train.loop``) runs one step, then calls every action
whose ``due(step)`` is true with ``run(step, state)``:

* ``ProgressBar``: advances the tqdm bar (every step);
* ``LogTrain``: fetches the step metrics and writes a ``train`` event
  (every ``log_every_steps`` and at the last step);
* ``EndOfEpoch``: the epoch's line, and an evaluation on ``data.eval_split``
  every ``eval_every_epochs`` epochs and at the last step;
* ``SaveCheckpoint``: at every ``checkpoint_every_epochs``-th epoch end, every
  ``checkpoint_every_steps`` and at the last step.

They share a ``HostMetrics`` buffer: step metrics stay on the device until an
action needs them. ``LogTrain`` reads them one step late: the ``train`` event of
step n is written once step n + 1 is dispatched, so the device computes step
n + 1 while the host waits for step n's metrics and writes them (the
asynchronous logging of big_vision). Only the actions that need the state of
step n (an evaluation, a checkpoint) wait for the device with nothing queued
behind. ``clu`` itself is not used: its
``periodic_actions`` assume its own metric writers and platform hooks, and it
is not on every package index the project installs from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.train import metrics as metrics_lib


class NonFiniteLossError(FloatingPointError):
  """The training loss or its gradient became NaN or Inf."""


class HostMetrics:
  """Step metrics on their way to the host: pending (device), window (since the last log), epoch.

  ``defer(fn)`` holds work that reads metrics until the next step is dispatched:
  ``add`` of step n + 1 runs it, after queuing that step.
  """

  def __init__(self, host_metrics: Callable[[Any], dict], last_checkpoint: Callable[[], str],
               max_in_flight: int | None = None):
    self._host = host_metrics
    self._where = last_checkpoint
    self._max_in_flight = max_in_flight
    self.pending: list[tuple[int, Any]] = []  # (step, the step's device metrics)
    self.window: list[dict] = []
    self.epoch: list[dict] = []
    self._deferred: list[Callable[[], None]] = []

  def add(self, step: int, device_metrics: Any) -> None:
    """Queues step ``step``'s metrics; waits for an older step if ``max_in_flight`` are
    running; then runs the deferred work."""
    self.pending.append((step, device_metrics))
    if self._max_in_flight and len(self.pending) > self._max_in_flight:
      jax.block_until_ready(self.pending[-self._max_in_flight - 1][1])
    self.run_deferred()

  def defer(self, work: Callable[[], None]) -> None:
    """Runs ``work`` at the next ``add`` (or ``run_deferred``), once another step is queued."""
    self._deferred.append(work)

  def run_deferred(self) -> None:
    """Runs the deferred work now (``fetch`` does first; the loop on a stop signal)."""
    work, self._deferred = self._deferred, []
    for fn in work:
      fn()

  def fetch(self, step: int) -> None:
    """Moves the pending metrics of steps up to ``step`` to the host; a
    ``NonFiniteLossError`` for a NaN/Inf loss or gradient.

    Deferred work runs first, so a train event due at an earlier step is
    written before anything that reads later metrics.
    """
    self.run_deferred()
    ready = [(s, m) for s, m in self.pending if s <= step]
    if not ready:
      return
    self.pending = self.pending[len(ready):]
    host = self._host([m for _, m in ready])
    bad = metrics_lib.first_nonfinite(host, ready[0][0])
    if bad is not None:
      raise NonFiniteLossError(
          f"the training loss or its gradient became NaN/Inf at step {bad}; {self._where()}. "
          f"Lower optimizer.learning_rate, set optimizer.grad_clip_norm, or set "
          f"skip_nonfinite=True to skip such updates.")
    self.window.extend(host)
    self.epoch.extend(host)


class Every:
  """Due every ``steps`` steps (0: never), at ``extra(step)`` steps, and at the last step."""

  def __init__(self, steps: int, final_step: int, extra: Callable[[int], bool] | None = None):
    self.steps, self.final_step, self.extra = int(steps or 0), final_step, extra

  def due(self, step: int) -> bool:
    return (step == self.final_step or (self.steps > 0 and step % self.steps == 0)
            or (self.extra is not None and self.extra(step)))


class ProgressBar:
  """The progress display on process 0 (or nothing); ``say`` prints above it."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str, quiet: bool = False):
    self.bar = None
    if enabled and not quiet:
      # A tqdm bar on a terminal; without one, a plain line every few seconds.
      self.bar = metrics_lib.progress_bar(total, initial, desc)
    self.quiet = quiet

  def due(self, step: int) -> bool:
    return self.bar is not None

  def run(self, step: int, state: Any) -> None:
    self.bar.update(1)

  def say(self, line: str) -> None:
    if self.quiet:
      return
    (self.bar.write if self.bar is not None else print)(line)

  def postfix(self, event: dict, primary: str = "accuracy") -> None:
    if self.bar is not None:
      self.bar.set_postfix(loss=f"{event['loss']:.4f}",
                           **{_short(primary): f"{event[primary]:.3f}"},
                           img_s=f"{event['images_per_sec']:.0f}")

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def _short(metric: str) -> str:
  """The console's name of a metric (``acc`` for accuracy, as the lines always said)."""
  return "acc" if metric == "accuracy" else metric


def _line(values: dict, task) -> str:
  """``loss X acc Y``: the loss and the task's primary metric."""
  return f"loss {values['loss']:.4f} {_short(task.primary)} {values[task.primary]:.4f}"


class LogTrain(Every):
  """A ``train`` event every ``log_every_steps``: summed metrics, images/s, learning rate.

  The event of step n is written once step n + 1 is queued (``HostMetrics.defer``),
  so the device is not left idle while the host reads and writes it; at the
  last step it is written at once. images/s is training throughput: the time of
  the window's steps, their data and checkpoints, without the evaluations that
  ran in it (``exclude``).
  """

  def __init__(self, every: int, experiment, start_step: int, host: HostMetrics,
               writer: metrics_lib.MetricsWriter, console: ProgressBar):
    super().__init__(every, experiment.total_steps)
    self.exp, self.start_step, self.host = experiment, start_step, host
    self.writer, self.console = writer, console
    self.window_start = time.time()
    self.excluded = 0.0
    self.train_images, self.train_time = 0, 0.0
    self._learning_rates = self._schedule_at_logged_steps()

  def _schedule_at_logged_steps(self) -> dict[int, float]:
    """The learning rate of every step this action logs, computed now in one call.

    Evaluated at log time, the schedule would be a computation queued on the
    device behind the step in flight, and the host would wait for that step.
    """
    total = self.exp.total_steps
    steps = list(range(self.steps, total + 1, self.steps)) if self.steps > 0 else []
    steps = np.array(sorted({s for s in steps if s > self.start_step} | {total}))
    # One compiled program: eagerly, each of the schedule's operations compiles on its own.
    rates = jax.jit(jax.vmap(self.exp.learning_rate))(jnp.asarray(steps - 1))
    return dict(zip(steps.tolist(), np.asarray(rates, np.float64).tolist()))

  def exclude(self, seconds: float) -> None:
    """Leaves ``seconds`` (an evaluation) out of the current window's time."""
    self.excluded += seconds

  def run(self, step: int, state: Any) -> None:
    if step == self.final_step:
      self.log(step)
    else:
      self.host.defer(lambda: self.log(step))

  def log(self, step: int) -> None:
    """Reads the metrics up to ``step`` and writes the event of the window that ends there."""
    self.host.fetch(step)
    window = self.host.window
    elapsed = time.time() - self.window_start - self.excluded
    images = len(window) * self.exp.config.batch_size
    if step - len(window) > self.start_step:  # Leave the compiling window out.
      self.train_images += images
      self.train_time += elapsed
    event = self.writer.write(step, "train", dict(
        self.exp.summarize(window), images_per_sec=images / max(elapsed, 1e-9),
        learning_rate=self._learning_rates[step], epoch=step / self.exp.steps_per_epoch))
    self.console.postfix(event, self.exp.task.primary)
    window.clear()
    self.window_start = time.time()
    self.excluded = 0.0

  @property
  def images_per_sec(self) -> float | None:
    return self.train_images / self.train_time if self.train_time > 0 else None


def evaluate(experiment, state: Any, loader) -> dict[str, float]:
  """The task's metrics of ``state`` over one pass of ``loader`` (from the split's sums)."""
  parallel = experiment.parallel
  outputs = [experiment.eval_step(state, parallel.shard_batch(batch)) for batch in loader]
  return experiment.summarize([parallel.host_metrics(m) for m in outputs])


class EndOfEpoch(Every):
  """At each epoch's end: the epoch's line; an evaluation every ``eval_every_epochs``.

  ``log_train``'s images/s leaves the evaluations' time out (``LogTrain.exclude``).
  """

  def __init__(self, experiment, host: HostMetrics, writer: metrics_lib.MetricsWriter,
               console: ProgressBar, log_train: LogTrain | None = None):
    super().__init__(experiment.steps_per_epoch, experiment.total_steps)
    self.exp, self.host, self.writer, self.console = experiment, host, writer, console
    self.log_train = log_train
    self.history: dict[str, Any] = {}

  def run(self, step: int, state: Any) -> None:
    exp, config = self.exp, self.exp.config
    self.host.fetch(step)  # writes this step's pending train event first
    epoch = int(np.ceil(step / exp.steps_per_epoch))
    line = f"epoch {epoch}/{int(np.ceil(exp.num_epochs))} step {step}"
    if self.host.epoch:
      train = exp.summarize(self.host.epoch)
      self.host.epoch.clear()
      line += f": train {_line(train, exp.task)}"
      self.history["train"] = train
    if epoch % config.eval_every_epochs == 0 or step == exp.total_steps:
      started = time.time()
      result = evaluate(exp, state, exp.eval_loader)
      if self.log_train is not None:
        self.log_train.exclude(time.time() - started)
      self.writer.write(step, "eval", dict(result, epoch=step / exp.steps_per_epoch))
      line += f" | {config.data.eval_split} {_line(result, exp.task)}"
      if step == exp.total_steps:
        self.history["final_eval"] = result
    self.console.say(line)


class SaveCheckpoint(Every):
  """Checkpoints at the end of every ``checkpoint_every_epochs``-th epoch, every
  ``checkpoint_every_steps`` and at the last step."""

  def __init__(self, experiment, checkpointer, host: HostMetrics):
    config = experiment.config
    every = int(config.get("checkpoint_every_epochs", 1)) * experiment.steps_per_epoch
    super().__init__(config.checkpoint_every_steps, experiment.total_steps,
                     extra=lambda step: every > 0 and step % every == 0)
    self.exp, self.checkpointer, self.host = experiment, checkpointer, host
    self.last_step = checkpointer.latest_step()
    self.saved_at: int | None = None

  def where(self) -> str:
    """Where the newest good state is, for error messages."""
    if self.last_step is None:
      return "no checkpoint was written yet"
    return f"the last good checkpoint is step {self.last_step} in {self.checkpointer.directory}"

  def run(self, step: int, state: Any) -> None:
    self.host.fetch(step)  # Never checkpoint a NaN state.
    items = self.exp.parallel.host_state(state).checkpoint_items()
    self.checkpointer.save(step, items, self.exp.train_loader.get_state())
    self.last_step = self.saved_at = step
