"""The config shared by the two-process run and its one-process reference."""

import os
import sys

# The worker script runs outside pytest: put tests/ (testlib) on its path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from testlib import tiny_config  # noqa: E402


def config(strategy="pmap"):
  """The tiny run cut to 128 examples and 6 steps, a checkpoint every 3, evaluation every epoch."""
  return tiny_config(**{"data.train_subset": 128, "num_train_steps": 6,
                        "checkpoint_every_steps": 3, "eval_every_epochs": 1,
                        "strategy": strategy})
