"""Trains and evaluates a model from a config file.

Usage::

  python experiments/train.py --config experiments/configs/digits_cnn.py \
      --workdir runs/digits [--config.optimizer.learning_rate=0.05] [--fresh]

Re-running on a work directory that holds a checkpoint resumes from it;
``--fresh`` moves the old run aside and starts over. All logic lives in
``cnnjax.train.train_and_evaluate``.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cnnjax.train import Preempted, train_and_evaluate
from cnnjax.train.config import check_override_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with ':variant' (e.g. ':smoke').",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (resumes if it holds a checkpoint).")
_FRESH = flags.DEFINE_bool("fresh", False, "Move an existing run directory aside and start over.")
flags.mark_flags_as_required(["config"])


def _parse(argv):
  try:
    check_override_flags(argv[1:])
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  return flags.FLAGS(argv)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  try:
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  except Preempted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
