"""Import time of cnnjax against its own dependencies, each in a fresh interpreter.

For every statement, the median over ``--rounds`` fresh ``python -c``
processes of the wall time of the statement alone (the process measures it
with ``time.perf_counter`` around an ``exec``), rounds interleaved so that a
slow moment of the machine hits every statement alike. ``import jax`` and
``import flax.linen`` are the peers: ``from cnnjax import ops`` costs what
JAX and Flax cost plus cnnjax's own modules. Run it on an idle machine::

  python benchmarks/import_time.py
  python benchmarks/import_time.py --rounds 3 --out /tmp/import_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

STATEMENTS = (
    "import jax",
    "import flax.linen",
    "import cnnjax",
    "from cnnjax import ops",
    "from cnnjax import layers",
    "from cnnjax import models",
    "from cnnjax import testing",
    "from cnnjax import data",
    "from cnnjax import train",
)

_PROBE = ("import time, sys; t = time.perf_counter(); exec(sys.argv[1]); "
          "print(time.perf_counter() - t)")


def measure(statement: str) -> float:
  """Seconds ``statement`` takes in a fresh interpreter (from the process's own clock)."""
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
  out = subprocess.run([sys.executable, "-c", _PROBE, statement], capture_output=True,
                       text=True, check=True, env=env)
  return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--out", default=None, help="also write the medians as JSON here")
  args = parser.parse_args()
  times: dict[str, list[float]] = {s: [] for s in STATEMENTS}
  for r in range(args.rounds):
    order = STATEMENTS[r % len(STATEMENTS):] + STATEMENTS[:r % len(STATEMENTS)]
    for statement in order:
      times[statement].append(measure(statement))
  medians = {s: statistics.median(v) for s, v in times.items()}
  jax_s = medians["import jax"]
  print(f"| statement | seconds (median of {args.rounds}) | / `import jax` |")
  print("| --- | --- | --- |")
  for statement, seconds in medians.items():
    print(f"| `{statement}` | {seconds:.2f} | {seconds / jax_s:.2f} |")
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"rounds": args.rounds, "median_s": medians, "all_s": times}, f, indent=2)


if __name__ == "__main__":
  main()
