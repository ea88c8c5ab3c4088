"""What the benchmark scripts share: interleaved timing, a CPU-contention monitor, tables.

Timing discipline (see ``BENCHMARKS.md``):

* every contender is compiled and warmed up before any timing;
* contenders are timed in rounds, interleaved (A B C, B C A, ...), so that a
  slow minute of the machine hits all of them;
* each round records how much CPU *other* processes used during it (from
  ``/proc/stat``, minus this process's own CPU time); rounds where others used
  more than ``CONTENDED_CORES`` cores are marked contaminated and left out of
  the median when clean rounds exist.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

#: A round is contaminated when other processes kept more than this many cores busy.
CONTENDED_CORES = 0.25


def _cpu_jiffies() -> tuple[float, float]:
  """(busy, steal) seconds of all CPUs since boot, from ``/proc/stat``."""
  try:
    with open("/proc/stat") as f:
      fields = [float(v) for v in f.readline().split()[1:]]
  except OSError:
    return math.nan, math.nan
  hz = os.sysconf("SC_CLK_TCK")
  user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
  busy = user + nice + system + irq + softirq
  return busy / hz, steal / hz


def _own_cpu() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


@dataclasses.dataclass
class Sample:
  """One timed round of one contender."""

  steps: int
  wall_s: float
  items_per_s: float
  other_cores: float  # CPU used by other processes during the round, in cores.
  own_cores: float  # CPU used by this process, in cores.

  @property
  def contaminated(self) -> bool:
    return not math.isnan(self.other_cores) and self.other_cores > CONTENDED_CORES


def timed(run: Callable[[int], Any], steps: int, items_per_step: int) -> Sample:
  """Runs ``run(steps)`` (which must block until done) and measures it."""
  busy0, _ = _cpu_jiffies()
  own0 = _own_cpu()
  t0 = time.perf_counter()
  run(steps)
  wall = time.perf_counter() - t0
  busy1, _ = _cpu_jiffies()
  own = _own_cpu() - own0
  other = max(0.0, (busy1 - busy0) - own) / wall
  return Sample(steps, wall, steps * items_per_step / wall, other, own / wall)


@dataclasses.dataclass
class Contender:
  """Something to time: ``run(n)`` performs ``n`` steps and blocks until they are done.

  Attributes:
    name: row label.
    run: the timed function.
    items_per_step: images (or examples) per step.
    setup: called once before timing (compilation, first steps); its wall
      time is reported as ``setup_s``.
    info: extra fields for the JSON record (e.g. the final loss).
  """

  name: str
  run: Callable[[int], Any]
  items_per_step: int
  setup: Callable[[], Any] | None = None
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  setup_s: float = math.nan
  samples: list[Sample] = dataclasses.field(default_factory=list)
  error: str | None = None

  def summary(self) -> dict[str, Any]:
    clean = [s for s in self.samples if not s.contaminated]
    used = clean or self.samples
    rates = [s.items_per_s for s in used]
    out = dict(name=self.name, setup_s=self.setup_s, error=self.error, **self.info)
    if rates:
      out.update(
          median=statistics.median(rates), min=min(rates), max=max(rates),
          step_ms=1e3 * statistics.median(s.wall_s / s.steps for s in used),
          rounds=len(self.samples), clean_rounds=len(clean),
          contaminated=not clean,
          other_cores=statistics.median(s.other_cores for s in self.samples),
          own_cores=statistics.median(s.own_cores for s in used),
          timed_s=sum(s.wall_s for s in self.samples))
    return out


def interleave(contenders: Sequence[Contender], seconds: float, rounds: int,
               log: Callable[[str], None] = print) -> None:
  """Sets up every contender, then times them in ``rounds`` interleaved rounds.

  Each contender is timed for about ``seconds`` in all (``seconds / rounds`` a
  round, at least one step). The order rotates every round. A contender
  whose setup raises is reported with its error and skipped.
  """
  live = []
  for c in contenders:
    t0 = time.perf_counter()
    try:
      if c.setup is not None:
        c.setup()
      c.setup_s = time.perf_counter() - t0
      c.run(1)  # A steady-state step after compilation, untimed.
    except Exception as err:  # noqa: BLE001 - reported in the table, e.g. torch.compile failing.
      c.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]
      log(f"  {c.name}: setup failed: {c.error}")
      continue
    probe = timed(c.run, 2, c.items_per_step)
    c.info["_step_s"] = probe.wall_s / 2
    log(f"  {c.name}: setup {c.setup_s:.1f} s, step {1e3 * c.info['_step_s']:.1f} ms")
    live.append(c)
  per_round = seconds / max(rounds, 1)
  for r in range(rounds):
    order = live[r % len(live):] + live[:r % len(live)] if live else []
    for c in order:
      steps = max(1, round(per_round / c.info["_step_s"]))
      sample = timed(c.run, steps, c.items_per_step)
      c.samples.append(sample)
      c.info["_step_s"] = sample.wall_s / steps
      log(f"  round {r + 1}/{rounds} {c.name}: {sample.items_per_s:,.1f}/s "
          f"({steps} steps, others {sample.other_cores:.2f} cores"
          f"{', CONTAMINATED' if sample.contaminated else ''})")
  for c in contenders:
    c.info.pop("_step_s", None)


def environment() -> dict[str, Any]:
  """CPU model, core count, library versions, date, load: what a result needs next to it."""
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  # Installed versions from the package metadata: importing torch, grain and TFDS only to
  # read their versions cost a benchmark ~3 s of CPU before it measured anything.
  # (importlib.metadata normalises names: "tensorflow_datasets" finds tensorflow-datasets.)
  versions = {}
  for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "grain", "tensorflow_datasets", "torch"):
    module = sys.modules.get(mod)
    if module is not None and hasattr(module, "__version__"):
      versions[mod] = module.__version__
      continue
    try:
      versions[mod] = importlib.metadata.version(mod)
    except importlib.metadata.PackageNotFoundError:
      continue
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "cpu": cpu,
      "cores": os.cpu_count(),
      "python": platform.python_version(),
      "versions": versions,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "loadavg_at_start": os.getloadavg(),
  }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A GitHub markdown table; floats are formatted by the caller."""
  lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
  lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def fmt_rate(summary: dict[str, Any]) -> str:
  """``median (min–max)`` of a contender summary, or its error."""
  if "median" not in summary:
    return f"failed: {summary.get('error')}"
  flag = " ⚠" if summary.get("contaminated") else ""
  return f"{summary['median']:,.0f} ({summary['min']:,.0f}–{summary['max']:,.0f}){flag}"


def add_out_arguments(parser: Any, default: str | None, help: str) -> None:
  """Adds ``--out PATH`` (default ``default``) and ``--overwrite`` to an argparse parser."""
  parser.add_argument("--out", default=default, help=help)
  parser.add_argument("--overwrite", action="store_true",
                      help="replace --out if it exists (by default an existing file is kept "
                           "and the benchmark stops before measuring)")


def check_out(path: str | None, overwrite: bool) -> None:
  """Stops, before anything is measured, if ``path`` exists and ``overwrite`` is false.

  The default ``--out`` files are the records ``BENCHMARKS.md`` cites; a rerun
  must not replace one unless asked.
  """
  if path and os.path.exists(path) and not overwrite:
    raise SystemExit(
        f"--out {path} exists (an earlier record, kept); pass --out NEW_PATH to write "
        "elsewhere, or --overwrite to replace it")


def write_json(path: str, record: dict[str, Any]) -> None:
  """Writes ``record`` as indented JSON, creating the directory.

  Call ``check_out`` first, at start-up: this replaces ``path`` if it exists.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(record, f, indent=2, default=str)
    f.write("\n")


def add_chunk_arguments(parser: Any, phases: bool = False) -> None:
  """Adds ``--chunk-batch N`` (and, with ``phases``, ``--phase-chunk N``) to an argparse parser."""
  parser.add_argument("--chunk-batch", type=int, default=None,
                      help="examples per chunk of the 'chunked' lowering "
                           "(cnnjax.ops.lowering.CHUNK_BATCH; default its value)")
  if phases:
    parser.add_argument("--phase-chunk", type=int, default=None,
                        help="examples per chunk of every 'subpixel' phase convolution "
                             "(cnnjax.ops.lowering.PHASE_CHUNK; default: the phase_chunk rule)")


def set_chunk_sizes(parser: Any, args: Any) -> None:
  """Sets ``cnnjax.ops.lowering``'s chunk sizes from ``add_chunk_arguments``'s options, for this run."""
  from cnnjax.ops import lowering  # noqa: PLC0415
  for flag, name, attribute in (("--chunk-batch", "chunk_batch", "CHUNK_BATCH"),
                                ("--phase-chunk", "phase_chunk", "PHASE_CHUNK")):
    value = getattr(args, name, None)
    if value is None:
      continue
    if value < 1:
      parser.error(f"{flag} must be a positive integer, got {value}")
    setattr(lowering, attribute, value)


def keep_in_flight(queued: list[Any], metrics: Any, max_in_flight: int | None) -> None:
  """Queues a dispatched step's ``metrics`` and waits for the oldest beyond ``max_in_flight``.

  As the training loop does (``Parallel.max_in_flight``): on several host devices a deep
  queue of steps with collectives can deadlock XLA:CPU's all-reduce (it aborted 2 of 3
  two-device runs of ``train_step.py`` before the limit). ``None``: no limit.
  """
  import jax  # noqa: PLC0415  (train_step.py sets XLA_FLAGS before jax is imported)

  queued.append(metrics)
  if max_in_flight and len(queued) > max_in_flight:
    jax.block_until_ready(queued.pop(0))


def check_single_device_xla_flags() -> None:
  """Refuses to run with ``--xla_force_host_platform_device_count`` (test setting), which splits the CPU."""
  if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
    raise SystemExit(
        "XLA_FLAGS forces several host devices "
        f"({os.environ['XLA_FLAGS']!r}); benchmarks measure one CPU device. "
        "Unset XLA_FLAGS (or pass --allow-xla-flags).")
