"""The training loop's cost: ``train_and_evaluate``'s images/s against its own bare step.

For an experiment config, two contenders on the same model, data, batch and
devices:

* ``end_to_end``: ``cnnjax.train.train_and_evaluate`` for ``--steps`` steps in
  a new run directory (data loading, the step, metrics every
  ``log_every_steps``, the progress bar, an evaluation and a checkpoint at
  each epoch end, as the config sets them). Its images/s is the run's own
  ``summary.json`` figure: the logging windows after the first, so
  compilation is left out;
* ``bare_step``: the same run's compiled training step (``setup.build``'s
  ``train_step``, the same ``Parallel``), called ``--steps`` times on one
  batch already on the device, nothing else.

Rounds alternate the two. The ratio end-to-end / bare is the loop's overhead
(the target is >= 0.95). The compilation cache is a new directory shared by
the rounds, so later rounds of ``end_to_end`` load their programs. Run it on
an idle machine::

  python benchmarks/end_to_end.py                                       # digits_cnn, 300 steps
  python benchmarks/end_to_end.py --checkpoint-every-epochs 5           # fewer checkpoints
  python benchmarks/end_to_end.py --config experiments/configs/digit_scenes_unet.py --steps 60
  python benchmarks/end_to_end.py --smoke                               # a few steps, for tests
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CONFIG = os.path.join(ROOT, "experiments", "configs", "digits_cnn.py")


def load_config(path: str, steps: int, log_every: int | None, cache_dir: str,
                checkpoint_every_epochs: int | None = None) -> Any:
  """The config of ``path`` (``'file.py'`` or ``'file.py:variant'``) cut to ``steps`` steps.

  ``log_every``: ``log_every_steps``; ``None`` keeps the config's, at most a
  quarter of ``steps`` (the first window, which compiles, is not counted).
  ``checkpoint_every_epochs``: ``None`` keeps the config's.
  """
  file, _, variant = path.partition(":")
  spec = importlib.util.spec_from_file_location("benchmark_config", file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant or None)
  with config.unlocked():
    config.num_train_steps = steps
    config.log_every_steps = log_every or min(config.log_every_steps, max(1, steps // 4))
    config.compilation_cache_dir = cache_dir
    config.plots = False
    if checkpoint_every_epochs is not None:
      config.checkpoint_every_epochs = checkpoint_every_epochs
  return config


def end_to_end(config: Any, devices: list) -> tuple[float, float, dict]:
  """One ``train_and_evaluate`` run in a new directory: ``(images/s, wall s, others' cores)``."""
  from cnnjax.train import train_and_evaluate  # noqa: PLC0415

  with tempfile.TemporaryDirectory(prefix="cnnjax_e2e_") as workdir:
    summary: dict[str, Any] = {}

    def run(_):
      summary.update(train_and_evaluate(config, workdir, devices=devices))

    sample = _common.timed(run, 1, 0)
  return summary["images_per_sec"], sample.wall_s, {"other_cores": sample.other_cores,
                                                    "contaminated": sample.contaminated}


def bare_step(config: Any, devices: list):
  """``(run(n), compile_s)``: ``n`` calls of the run's compiled step on one device-resident batch."""
  import jax  # noqa: PLC0415

  from cnnjax.train import setup  # noqa: PLC0415

  exp = setup.build(config, devices=devices)
  state = exp.parallel.put_state(exp.init_state())
  batch = exp.parallel.shard_batch(next(iter(exp.train_loader)))
  t0 = time.perf_counter()
  state, metrics = exp.train_step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0

  def run(n: int) -> None:
    nonlocal state
    for _ in range(n):
      state, metrics = exp.train_step(state, batch)
    jax.block_until_ready((state, metrics))

  return run, compile_s


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default=DEFAULT_CONFIG,
                      help="an experiment config file, optionally with ':variant'")
  parser.add_argument("--steps", type=int, default=300, help="training steps per round")
  parser.add_argument("--log-every", type=int, default=None,
                      help="log_every_steps (default: the config's)")
  parser.add_argument("--checkpoint-every-epochs", type=int, default=None,
                      help="checkpoint_every_epochs (default: the config's)")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--devices", type=int, default=1, help="local devices the run uses")
  parser.add_argument("--smoke", action="store_true", help="12 steps, one round (tests)")
  parser.add_argument("--allow-xla-flags", action="store_true")
  _common.add_out_arguments(parser, None, "also write the record as JSON here")
  args = parser.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if not args.allow_xla_flags:
    _common.check_single_device_xla_flags()
  if args.smoke:
    args.steps, args.rounds = 12, 1
    args.log_every = args.log_every or 4
  import jax  # noqa: PLC0415

  devices = jax.local_devices()[:args.devices]
  cache = tempfile.mkdtemp(prefix="cnnjax_e2e_cache_")
  config = load_config(args.config, args.steps, args.log_every, cache,
                       args.checkpoint_every_epochs)
  log_every = config.log_every_steps
  print(f"{config.model.name} on {config.data.name}, batch {config.batch_size}, "
        f"{len(devices)} {devices[0].platform} device(s), {args.steps} steps a round, "
        f"metrics every {log_every}, a checkpoint every "
        f"{config.checkpoint_every_epochs} epoch(s)", flush=True)
  run_bare, compile_s = bare_step(config, devices)
  # The images each bare round times: the steps the engine's figure counts (all windows but
  # the first).
  timed_steps = max(1, args.steps - log_every)
  e2e, bare = [], []
  for r in range(args.rounds):
    order = ("e2e", "bare") if r % 2 == 0 else ("bare", "e2e")
    for which in order:
      if which == "e2e":
        rate, wall, info = end_to_end(config, devices)
        e2e.append(dict(images_per_s=rate, wall_s=wall, **info))
      else:
        sample = _common.timed(run_bare, timed_steps, config.batch_size)
        bare.append(dict(images_per_s=sample.items_per_s, wall_s=sample.wall_s,
                         other_cores=sample.other_cores, contaminated=sample.contaminated))
      last = (e2e if which == "e2e" else bare)[-1]
      print(f"  round {r + 1}/{args.rounds} {which}: {last['images_per_s']:,.1f} images/s"
            f" (others {last['other_cores']:.2f} cores"
            f"{', CONTAMINATED' if last['contaminated'] else ''})", flush=True)
  e2e_median = statistics.median(s["images_per_s"] for s in e2e)
  bare_median = statistics.median(s["images_per_s"] for s in bare)
  ratio = e2e_median / bare_median
  record = {"benchmark": "end_to_end", "environment": _common.environment(),
            "config": os.path.relpath(args.config, ROOT), "model": config.model.name,
            "data": config.data.name, "batch": config.batch_size, "devices": len(devices),
            "steps": args.steps, "log_every_steps": log_every,
            "checkpoint_every_epochs": config.checkpoint_every_epochs,
            "bare_compile_s": compile_s,
            "end_to_end": e2e, "bare_step": bare, "end_to_end_median": e2e_median,
            "bare_step_median": bare_median, "ratio": ratio}
  print(_common.markdown_table(
      ["contender", "images/s median (min–max)", "rounds"],
      [[name, _common.fmt_rate({"median": median,
                                "min": min(s["images_per_s"] for s in samples),
                                "max": max(s["images_per_s"] for s in samples)}), len(samples)]
       for name, median, samples in (("end_to_end", e2e_median, e2e),
                                     ("bare_step", bare_median, bare))]))
  print(f"\nend to end / bare step: {ratio:.3f}")
  if args.out:
    _common.write_json(args.out, record)
    print(f"written {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
