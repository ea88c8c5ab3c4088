"""Eager ``Module.init`` and ``apply`` of registered models, each in a fresh interpreter.

``model.init(key, x)`` called outside ``jax.jit`` (as in a notebook, or in
research code that does not jit its initialisation) dispatches every
operation of the forward pass eagerly, and XLA compiles each dispatched
program on first use. This times that first ``init`` and the first eager
``apply`` after it (batch 2, float32, CPU by default), the median over
``--rounds`` fresh processes, rounds interleaved. The engine itself
initialises under ``jit`` and is not what this measures. Run it on an idle
machine::

  python benchmarks/eager_init.py
  python benchmarks/eager_init.py --models mobilenet_v2 --rounds 3
  python benchmarks/eager_init.py --compare /path/to/older/checkout   # cnnjax there too
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

MODELS = ("resnet18_cifar", "mobilenet_v2", "efficientnet_b0")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_PROBE = """
import json, sys, time
import jax, jax.numpy as jnp
from cnnjax import models
name = sys.argv[1]
model = models.create(name, num_classes=10)
x = jnp.zeros((2, *models.spec(name).input_shape), jnp.float32)
t = time.perf_counter()
variables = jax.block_until_ready(model.init(jax.random.key(0), x, train=False))
init_s = time.perf_counter() - t
t = time.perf_counter()
jax.block_until_ready(model.apply(variables, x, train=False))
print(json.dumps({"init_s": init_s, "apply_s": time.perf_counter() - t}))
"""


def measure(model: str, root: str = ROOT) -> dict[str, float]:
  """``{'init_s', 'apply_s'}`` of ``model`` in a fresh interpreter, cnnjax from ``root``."""
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  # cwd: ``python -c`` puts the working directory first on sys.path.
  out = subprocess.run([sys.executable, "-c", _PROBE, model], capture_output=True, text=True,
                       check=True, env=env, cwd=root)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--compare", default=None,
                      help="another checkout of cnnjax, measured in the same rounds")
  _common.add_out_arguments(parser, None, "write the results as JSON here")
  args = parser.parse_args()
  _common.check_out(args.out, args.overwrite)
  roots = [ROOT] + ([os.path.abspath(args.compare)] if args.compare else [])
  cases = [(m, r) for m in args.models.split(",") if m for r in roots]
  samples: dict[tuple[str, str], list[dict[str, float]]] = {c: [] for c in cases}
  for _ in range(args.rounds):
    for case in cases:
      samples[case].append(measure(*case))
  rows = []
  print("| model | checkout | eager init s | first eager apply s |")
  print("| --- | --- | ---: | ---: |")
  for (model, root), runs in samples.items():
    init = statistics.median(r["init_s"] for r in runs)
    apply = statistics.median(r["apply_s"] for r in runs)
    rows.append({"model": model, "checkout": root, "init_s": init, "apply_s": apply,
                 "rounds": len(runs)})
    print(f"| {model} | {root} | {init:.2f} | {apply:.2f} |")
  if args.out:
    _common.write_json(args.out, {"benchmark": "eager_init", "loadavg": os.getloadavg(),
                                  "results": rows})


if __name__ == "__main__":
  main()
