"""The loop's periodic actions: training images/s leaves evaluations out."""

import types

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


def _actions(monkeypatch, clock, eval_s):
  monkeypatch.setattr(periodic.time, "time", clock)
  # Eight steps an epoch of 32 images; metrics every 4 steps; every evaluation takes eval_s.
  exp = types.SimpleNamespace(
      total_steps=16, steps_per_epoch=8, num_epochs=2.0,
      config=types.SimpleNamespace(batch_size=32, eval_every_epochs=1,
                                   data=types.SimpleNamespace(eval_split="test")),
      task=types.SimpleNamespace(primary="accuracy"),
      summarize=lambda metrics: {"loss": 1.0, "accuracy": 0.5},
      learning_rate=lambda step: 0.1, eval_loader=None)

  def evaluate(experiment, state, loader):
    clock.now += eval_s
    return {"loss": 1.0, "accuracy": 0.5}

  monkeypatch.setattr(periodic, "evaluate", evaluate)
  host = periodic.HostMetrics(lambda m: m, lambda: "no checkpoint")
  console = periodic.ProgressBar(False, 16, 0, "test")
  log_train = periodic.LogTrain(4, exp, 0, host, _Writer(), console)
  epoch_end = periodic.EndOfEpoch(exp, host, _Writer(), console, log_train)
  return host, log_train, epoch_end


def test_training_images_per_second_leave_evaluations_out(monkeypatch):
  clock = _Clock()
  host, log_train, epoch_end = _actions(monkeypatch, clock, eval_s=50.0)
  for step in range(1, 17):
    clock.now += 0.5  # each training step takes half a second
    host.add({"loss_sum": 1.0, "count": 32, "grad_norm": 1.0})
    for action in (log_train, epoch_end):
      if action.due(step):
        action.run(step, None)
  # Windows after the first (steps 5-16, three windows of 4 steps): 12 steps in 6 s,
  # (exact: the clock moves by halves, which float64 adds without rounding)
  # although an evaluation of 50 s ran inside the window of steps 9-12.
  assert log_train.images_per_sec == 12 * 32 / 6.0
  rates = [e["images_per_sec"] for e in log_train.writer.events]
  assert rates == [4 * 32 / 2.0] * 4
