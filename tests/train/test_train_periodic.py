"""The loop's periodic actions: training images/s leaves evaluations out; train events are
read one step late, with the next step queued."""

import types

import pytest

from cnnjax.train import periodic


class _Clock:
  def __init__(self):
    self.now = 100.0

  def __call__(self):
    return self.now


class _Writer:
  def __init__(self):
    self.events = []

  def write(self, step, split, values):
    self.events.append(dict(values, step=step, split=split))
    return self.events[-1]


class _Device:
  """Steps that take half a second each; reading a step's metrics waits for it.

  ``queued`` is the newest step dispatched; ``reads`` records, for each read,
  the steps read and the newest step queued at that moment.
  """

  def __init__(self, clock):
    self.clock, self.queued, self.reads = clock, 0, []

  def metrics(self, step):
    self.queued = step
    return {"loss_sum": 1.0, "count": 32, "grad_norm": 1.0, "step": step}

  def to_host(self, pending):
    # The clock moves by halves, which float64 adds without rounding: exact arithmetic below.
    self.clock.now += 0.5 * len(pending)
    self.reads.append(([m["step"] for m in pending], self.queued))
    return pending


def _actions(monkeypatch, clock, eval_s, total_steps=16):
  monkeypatch.setattr(periodic.time, "time", clock)
  # Eight steps an epoch of 32 images; metrics every 4 steps; every evaluation takes eval_s.
  exp = types.SimpleNamespace(
      total_steps=total_steps, steps_per_epoch=8, num_epochs=total_steps / 8,
      config=types.SimpleNamespace(batch_size=32, eval_every_epochs=1,
                                   data=types.SimpleNamespace(eval_split="test")),
      task=types.SimpleNamespace(primary="accuracy"),
      summarize=lambda metrics: {"loss": 1.0, "accuracy": 0.5},
      learning_rate=lambda step: 0.1 * (step + 1), eval_loader=None)

  def evaluate(experiment, state, loader):
    clock.now += eval_s
    return {"loss": 1.0, "accuracy": 0.5}

  monkeypatch.setattr(periodic, "evaluate", evaluate)
  device = _Device(clock)
  host = periodic.HostMetrics(device.to_host, lambda: "no checkpoint")
  console = periodic.ProgressBar(False, total_steps, 0, "test")
  log_train = periodic.LogTrain(4, exp, 0, host, _Writer(), console)
  epoch_end = periodic.EndOfEpoch(exp, host, _Writer(), console, log_train)
  return device, host, log_train, epoch_end


def _train(device, host, actions, total_steps=16):
  for step in range(1, total_steps + 1):
    host.add(step, device.metrics(step))
    for action in actions:
      if action.due(step):
        action.run(step, None)


def test_training_images_per_second_leave_evaluations_out(monkeypatch):
  clock = _Clock()
  device, host, log_train, epoch_end = _actions(monkeypatch, clock, eval_s=50.0)
  _train(device, host, (log_train, epoch_end))
  # Windows after the first (steps 5-16, three windows of 4 steps): 12 steps in 6 s,
  # although an evaluation of 50 s ran inside the window of steps 9-12.
  assert log_train.images_per_sec == 12 * 32 / 6.0
  rates = [e["images_per_sec"] for e in log_train.writer.events]
  assert rates == [4 * 32 / 2.0] * 4


def test_train_events_are_read_with_the_next_step_queued(monkeypatch):
  device, host, log_train, epoch_end = _actions(monkeypatch, _Clock(), eval_s=0.0,
                                                total_steps=12)
  _train(device, host, (log_train,), total_steps=12)
  # Steps 4 and 8 are read once steps 5 and 9 are queued; the last step at once.
  assert device.reads == [([1, 2, 3, 4], 5), ([5, 6, 7, 8], 9), ([9, 10, 11, 12], 12)]
  events = log_train.writer.events
  assert [e["step"] for e in events] == [4, 8, 12]
  # The schedule's value at each logged step (lr(step - 1) = 0.1 * step), not the step read.
  assert [e["learning_rate"] for e in events] == pytest.approx([0.4, 0.8, 1.2], rel=1e-6)


def test_an_epoch_end_writes_the_pending_train_event_before_its_own(monkeypatch):
  device, host, log_train, epoch_end = _actions(monkeypatch, _Clock(), eval_s=0.0)
  _train(device, host, (log_train, epoch_end))
  # At step 8 the train event is due with the epoch end: written first, no step queued behind.
  assert ([5, 6, 7, 8], 8) in device.reads
  assert [e["step"] for e in log_train.writer.events] == [4, 8, 12, 16]
  assert [e["step"] for e in epoch_end.writer.events] == [8, 16]


def test_a_deferred_read_raises_for_a_nonfinite_loss_naming_its_step(monkeypatch):
  device, host, log_train, _ = _actions(monkeypatch, _Clock(), eval_s=0.0)
  original = device.metrics
  device.metrics = lambda step: dict(original(step), loss_sum=float("nan") if step == 3 else 1.0)
  with pytest.raises(periodic.NonFiniteLossError, match="at step 3;"):
    _train(device, host, (log_train,))
  assert device.queued == 5  # found when step 4's event was read, with step 5 queued


class _Checkpointer:
  directory = "/nowhere"

  def latest_step(self):
    return None


@pytest.mark.parametrize("every_epochs,every_steps,expected", [
    (1, 0, [8, 16, 24, 30]),    # every epoch end (8 steps an epoch) and the last step
    (2, 0, [16, 30]),           # every second epoch end
    (0, 0, [30]),               # no epoch ends: the last step only
    (0, 12, [12, 24, 30]),      # by steps only
    (3, 10, [10, 20, 24, 30]),  # both
])
def test_checkpoint_steps_follow_checkpoint_every_epochs(every_epochs, every_steps, expected):
  from cnnjax.train import config as config_lib  # noqa: PLC0415

  config = config_lib.base_config()
  config.checkpoint_every_epochs, config.checkpoint_every_steps = every_epochs, every_steps
  exp = types.SimpleNamespace(total_steps=30, steps_per_epoch=8, config=config)
  save = periodic.SaveCheckpoint(exp, _Checkpointer(), host=None)
  assert [step for step in range(1, 31) if save.due(step)] == expected


def test_a_negative_checkpoint_every_epochs_is_refused():
  from cnnjax.train import config as config_lib  # noqa: PLC0415

  config = config_lib.base_config()
  config.model.name, config.data.name = "digits_cnn", "digits"
  config.checkpoint_every_epochs = -1
  with pytest.raises(ValueError, match="checkpoint_every_epochs must be >= 0, got -1"):
    config_lib.validate(config)
