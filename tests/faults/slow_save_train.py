"""``experiments/train.py`` with orbax's commit of one checkpoint held back, for kill tests.

Usage: python slow_save_train.py STEP SECONDS <experiments/train.py arguments>

Orbax writes checkpoint ``STEP`` into ``<STEP>.orbax-checkpoint-tmp-*`` and
renames it to ``<STEP>`` at the end (``AtomicRenameTemporaryPath.finalize``).
This script makes that rename wait ``SECONDS`` first, so that a test can kill
the process while the checkpoint is half done: written but not committed.
Nothing in the package changes; the delay lives only in this process.
"""

import asyncio
import os
import runpy
import sys

from orbax.checkpoint._src.path import atomicity

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
  step, seconds = sys.argv[1], float(sys.argv[2])
  original = atomicity.AtomicRenameTemporaryPath.finalize

  async def slow_finalize(self, *args, **kwargs):
    if self.get_final().name == step:
      await asyncio.sleep(seconds)
    return await original(self, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = slow_finalize
  script = os.path.join(ROOT, "experiments", "train.py")
  sys.argv = [script, *sys.argv[3:]]
  runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
  main()
