"""Time to first step of the cnnjax engine's training step: trace, lower, compile, run.

Each run is a fresh process (imports are timed apart), building the engine's
``pmap(train_step)`` exactly as ``benchmarks/train_step.py``'s ``cnnjax``
contender does, then timing separately

* ``trace``: ``jax.make_jaxpr`` of the step (Python tracing only);
* ``lower``: ``p_step.lower(state, batch)`` (tracing again, plus StableHLO);
* ``compile``: ``lowered.compile()`` (XLA, or a read from the persistent cache);
* ``step``: the first call of the compiled step, until its metrics are ready.

``--runs 2`` runs the same command twice with one persistent compilation
cache (``cnnjax._cache.enable_compilation_cache``) in a fresh directory: the
first run fills it, the second reads it::

  python benchmarks/first_step.py --model lenet5 --runs 2
  python benchmarks/first_step.py --model resnet18_cifar --lowerings auto,lax --runs 2
  python benchmarks/first_step.py --smoke
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


def one_run(model: str, batch: int, lowering: str, cache_dir: str | None, size: int) -> dict:
  """Times the stages of one first step in this process; returns them in seconds."""
  t0 = time.perf_counter()
  import functools

  import jax
  import numpy as np

  from cnnjax import _cache, models, ops, train
  import train_step as bench  # noqa: PLC0415

  timings = {"imports": time.perf_counter() - t0}
  if cache_dir:
    _cache.enable_compilation_cache(cache_dir, min_compile_time_s=0.0)
  images, labels = bench.synthetic_batch(batch, size)
  spec = models.spec(model)
  kwargs = {"num_classes": bench.NUM_CLASSES}
  if "axis_name" in spec.fields():
    kwargs["axis_name"] = train.AXIS
  net = models.create(model, **kwargs)
  tx = train.create_optimizer({"name": "adam", "learning_rate": bench.LEARNING_RATE},
                              {"name": "constant"}, steps_per_epoch=1, num_epochs=1)
  parallel = train.Parallel("pmap")
  with ops.default_lowering(lowering):
    t = time.perf_counter()
    state = parallel.put_state(jax.device_get(train.create_train_state(
        net, tx, seed=0, input_shape=(1, *images.shape[1:]))))
    timings["init"] = time.perf_counter() - t
    data = parallel.shard_batch({"image": images, "label": labels, "mask": np.ones(batch, bool)})
    step = parallel.train_step(functools.partial(train.train_step, num_classes=bench.NUM_CLASSES))
    t = time.perf_counter()
    jax.make_jaxpr(step)(state, data)
    timings["trace"] = time.perf_counter() - t
    t = time.perf_counter()
    lowered = step.lower(state, data)
    timings["lower"] = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    timings["compile"] = time.perf_counter() - t
    t = time.perf_counter()
    _, metrics = compiled(state, data)
    jax.block_until_ready(metrics)
    timings["step"] = time.perf_counter() - t
  timings["first_step_after_imports"] = sum(
      timings[k] for k in ("init", "lower", "compile", "step"))
  return timings


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model", default="lenet5")
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--lowerings", default="auto")
  parser.add_argument("--runs", type=int, default=2, help="fresh processes sharing one cache")
  parser.add_argument("--no-cache", action="store_true")
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--smoke", action="store_true")
  _common.add_out_arguments(parser, "benchmarks/results/first_step.json",
                            "where the JSON record is written (not with --smoke)")
  parser.add_argument("--child", default="", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    lowering, cache_dir = args.child.split("|")
    print(json.dumps(one_run(args.model, args.batch, lowering, cache_dir or None, args.size)))
    return 0
  if args.smoke:
    args.batch, args.size, args.runs = 2, 32, 2
  else:
    _common.check_out(args.out, args.overwrite)
  records = []
  for lowering in args.lowerings.split(","):
    cache = None if args.no_cache else tempfile.mkdtemp(prefix="cnnjax_cache_")
    for run in range(args.runs):
      out = subprocess.run(
          [sys.executable, os.path.abspath(__file__), "--model", args.model, "--batch",
           str(args.batch), "--size", str(args.size), "--child", f"{lowering}|{cache or ''}"],
          capture_output=True, text=True, check=True)
      timings = json.loads(out.stdout.strip().splitlines()[-1])
      records.append({"model": args.model, "batch": args.batch, "lowering": lowering,
                      "run": run + 1, "cache": cache is not None, **timings})
      print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in records[-1].items()), flush=True)
  if not args.smoke:
    _common.write_json(args.out, {"benchmark": "first_step", "loadavg": os.getloadavg(),
                                  "results": records})
  return 0


if __name__ == "__main__":
  sys.exit(main())
