"""Metrics on the host: ``metrics.jsonl``, optional TensorBoard events, plots, summaries.

Steps return sums (``loss_sum``, ``correct``, ``count``; see
``cnnjax.train.steps``) that stay on the device; the loop fetches them every
``log_every_steps`` steps, sums them here, and writes one JSON object per log
event to ``metrics.jsonl``::

  {"step": 100, "split": "train", "loss": 0.31, "accuracy": 0.91,
   "count": 6400, "images_per_sec": 5321.0, "learning_rate": 0.05, ...}

Only process 0 writes; the others build the same objects and drop them.

``progress_bar`` is a tqdm bar on a terminal and a plain line every
``LOG_INTERVAL_S`` seconds otherwise (a log file, CI), where hundreds of
``\r`` updates would be one unreadable line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

#: Seconds between progress lines when the output is not a terminal.
LOG_INTERVAL_S = 30.0

import numpy as np

from cnnjax.train.steps import summarize


def sum_metrics(metrics: Sequence[Mapping[str, Any]]) -> dict[str, float]:
  """Sums a list of host metric dicts key by key (``grad_norm`` is averaged)."""
  if not metrics:
    return {}
  out = {}
  for key in metrics[0]:
    values = np.array([float(np.asarray(m[key])) for m in metrics], np.float64)
    out[key] = float(values.mean() if key == "grad_norm" else values.sum())
  return out


def first_nonfinite(metrics: Sequence[Mapping[str, Any]], first_step: int) -> int | None:
  """The step of the first entry whose ``loss_sum`` or ``grad_norm`` is NaN/Inf, or ``None``.

  The gradient counts too: a NaN input can leave the loss finite (``relu``
  and max-pooling map NaN to a number on some backends) while its gradient
  turns every parameter into NaN. Entries with ``skipped`` set were not
  applied and do not count.

  Args:
    metrics: per-step host metrics, in order.
    first_step: the step number of ``metrics[0]`` (steps counted from 1).
  """
  for i, m in enumerate(metrics):
    if float(np.asarray(m.get("skipped", 0.0))):
      continue
    if any(key in m and not np.isfinite(float(np.asarray(m[key])))
           for key in ("loss_sum", "grad_norm")):
      return first_step + i
  return None


class MetricsWriter:
  """Appends log events to ``<workdir>/metrics.jsonl`` (and TensorBoard events).

  Args:
    workdir: the run directory.
    enabled: write at all (``jax.process_index() == 0``).
    tensorboard: also write TensorBoard event files next to ``metrics.jsonl``
      with ``tensorboardX`` (no TensorFlow needed); ``ValueError`` if it is
      not installed.
  """

  def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = False):
    self.path = os.path.join(workdir, "metrics.jsonl")
    self.enabled = enabled
    self._tb = None
    if enabled and tensorboard:
      try:
        import tensorboardX  # noqa: PLC0415
      except ImportError as e:
        raise ValueError(
            "config tensorboard=True needs the tensorboardX package: "
            "pip install tensorboardX (or set --config.tensorboard=False)") from e
      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, split: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Writes one event ``{'step', 'split', **values}``; returns it."""
    event = {"step": int(step), "split": split}
    event.update({k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
                  for k, v in values.items()})
    if self.enabled:
      with open(self.path, "a") as f:
        f.write(json.dumps(event) + "\n")
      if self._tb is not None:
        for key, value in values.items():
          if isinstance(value, (int, float, np.floating)):
            self._tb.add_scalar(f"{split}/{key}", float(value), int(step))
    return event

  def write_summed(self, step: int, split: str, metrics: Sequence[Mapping[str, Any]],
                   **extra: Any) -> dict[str, Any]:
    """Sums per-step metrics, converts them to loss/accuracy and writes them."""
    values = summarize(sum_metrics(metrics))
    values.update(extra)
    return self.write(step, split, values)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_events(path: str) -> list[dict[str, Any]]:
  """The events of a ``metrics.jsonl`` file, in order (a truncated last line is ignored)."""
  events = []
  if not os.path.exists(path):
    return events
  with open(path) as f:
    for line in f:
      try:
        events.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return events


def truncate_events(path: str, last_step: int) -> None:
  """Drops events after ``last_step`` (a resumed run rewrites them)."""
  events = [e for e in read_events(path) if e["step"] <= last_step]
  with open(path, "w") as f:
    for e in events:
      f.write(json.dumps(e) + "\n")


class LineProgress:
  """A progress report for output that is not a terminal: one line every ``interval_s`` seconds.

  Has the part of tqdm's interface the loop uses (``update``, ``set_postfix``,
  ``write``, ``close``). Each line reads
  ``digits_cnn/digits: step 120/660 (18%), 4.1 step/s, loss=0.2, acc=0.95``.
  """

  def __init__(self, total: int, initial: int = 0, desc: str = "", *,
               interval_s: float = LOG_INTERVAL_S, file: TextIO | None = None):
    self.total, self.n, self.desc = int(total), int(initial), desc
    self.interval_s = float(interval_s)
    self.file = file if file is not None else sys.stderr
    self._postfix: dict[str, Any] = {}
    self._start_n, self._start = self.n, time.monotonic()
    self._last = self._start

  def _line(self) -> str:
    rate = (self.n - self._start_n) / max(time.monotonic() - self._start, 1e-9)
    parts = [f"step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f}%)",
             f"{rate:.1f} step/s", *(f"{k}={v}" for k, v in self._postfix.items())]
    return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

  def update(self, n: int = 1) -> None:
    """Counts ``n`` steps; prints a line if ``interval_s`` has passed since the last."""
    self.n += n
    now = time.monotonic()
    if now - self._last >= self.interval_s:
      self._last = now
      print(self._line(), file=self.file, flush=True)

  def set_postfix(self, **values: Any) -> None:
    """Values shown at the end of the next line (loss, accuracy, images/s)."""
    self._postfix = values

  def write(self, text: str) -> None:
    print(text, file=self.file, flush=True)

  def close(self) -> None:
    """Prints the final line."""
    print(self._line(), file=self.file, flush=True)


def progress_bar(total: int, initial: int = 0, desc: str = "", *,
                 file: TextIO | None = None, interval_s: float = LOG_INTERVAL_S) -> Any:
  """A tqdm bar if ``file`` (default stderr) is a terminal, else a ``LineProgress``."""
  file = file if file is not None else sys.stderr
  isatty = getattr(file, "isatty", None)
  if isatty is not None and isatty():
    from tqdm import auto as tqdm  # noqa: PLC0415

    return tqdm.tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                     desc=desc, file=file)
  return LineProgress(total, initial, desc, interval_s=interval_s, file=file)


def plot_curves(metrics_path: str, plots_dir: str, *, title: str = "",
                split_names: Mapping[str, str] | None = None,
                keys: Sequence[str] = ("loss", "accuracy")) -> list[str]:
  """Writes ``<key>.png`` for each of ``keys`` (train and eval curves per step).

  Args:
    metrics_path: a ``metrics.jsonl``.
    plots_dir: where the PNG files go.
    title: the figure title, e.g. ``'digits_cnn on digits (runs/digits)'``.
    split_names: the data split behind each event split, e.g.
      ``{'train': 'train', 'eval': 'test'}``; the legend names the data split
      (``'test'``), not the role (``'eval'``).
    keys: the metrics plotted (a task's ``plot_keys``).

  Returns:
    The paths written.
  """
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  events = read_events(metrics_path)
  os.makedirs(plots_dir, exist_ok=True)
  written = []
  for key in keys:
    fig, ax = plt.subplots(figsize=(6, 4))
    for split in ("train", "eval"):
      points = [(e["step"], e[key]) for e in events if e.get("split") == split and key in e]
      if points:
        steps, values = zip(*points)
        label = split
        if split_names and split in split_names:
          label = f"{split_names[split]} split" + (", each epoch" if split == "eval" else "")
        ax.plot(steps, values, marker="o" if split == "eval" else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    if title:
      ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    path = os.path.join(plots_dir, f"{key}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
  return written


def plot_run(workdir: str, config: Mapping[str, Any],
             keys: Sequence[str] = ("loss", "accuracy")) -> list[str]:
  """``plot_curves`` of a run directory, titled with model, data set and directory.

  The legend names the data splits of ``config.data`` (``train_split`` and
  ``eval_split``). Returns the paths written (``<workdir>/plots/*.png``).
  """
  data = config["data"]
  title = f"{config['model']['name']} on {data['name']} ({workdir})"
  return plot_curves(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "plots"),
                     title=title,
                     split_names={"train": data["train_split"], "eval": data["eval_split"]},
                     keys=keys)
