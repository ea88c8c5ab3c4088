"""Import time of cnnjax against its own dependencies, each in a fresh interpreter.

For every statement, the median over ``--rounds`` fresh ``python -c``
processes of the wall time of the statement alone (the process measures it
with ``time.perf_counter`` around an ``exec``), rounds interleaved so that a
slow moment of the machine hits every statement alike. ``import jax`` and
``import flax.linen`` are the peers: ``from cnnjax import ops`` costs what
JAX and Flax cost plus cnnjax's own modules. Run it on an idle machine::

  python benchmarks/import_time.py
  python benchmarks/import_time.py --rounds 3 --out /tmp/import_time.json
  python benchmarks/import_time.py --compare /path/to/older/checkout   # cnnjax there too
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(statement: str, root: str = ROOT) -> float:
  """Seconds ``statement`` takes in a fresh interpreter, cnnjax from ``root`` (the process's own clock)."""
  env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"), PYTHONPATH=root)
  # cwd too: ``python -c`` puts the working directory first on sys.path.
  out = subprocess.run([sys.executable, "-c", _PROBE, statement], capture_output=True,
                       text=True, check=True, env=env, cwd=root)
  return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--rounds", type=int, default=5)
  _common.add_out_arguments(parser, None, "also write the medians as JSON here")
  parser.add_argument("--compare", default=None,
                      help="another checkout of cnnjax whose cnnjax statements are timed too")
  args = parser.parse_args()
  _common.check_out(args.out, args.overwrite)
  cases = [(s, ROOT) for s in STATEMENTS]
  if args.compare:
    cases += [(s, os.path.abspath(args.compare)) for s in STATEMENTS if "cnnjax" in s]
  times: dict[tuple[str, str], list[float]] = {c: [] for c in cases}
  for r in range(args.rounds):
    for case in cases[r % len(cases):] + cases[:r % len(cases)]:
      times[case].append(measure(*case))
  medians = {c: statistics.median(v) for c, v in times.items()}
  jax_s = medians[("import jax", ROOT)]
  print(f"| statement | cnnjax from | seconds (median of {args.rounds}) | / `import jax` |")
  print("| --- | --- | --- | --- |")
  for (statement, root), seconds in medians.items():
    where = "this checkout" if root == ROOT else root
    print(f"| `{statement}` | {where} | {seconds:.2f} | {seconds / jax_s:.2f} |")
  if args.out:
    _common.write_json(args.out, {
        "rounds": args.rounds,
        "median_s": {f"{s} [{r}]": v for (s, r), v in medians.items()},
        "all_s": {f"{s} [{r}]": v for (s, r), v in times.items()}})


if __name__ == "__main__":
  main()
