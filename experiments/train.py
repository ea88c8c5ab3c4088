"""Trains and evaluates a model from a config file.

Usage::

  python experiments/train.py --config experiments/configs/digits_cnn.py \
      --workdir runs/digits [--config.optimizer.learning_rate=0.05] [--fresh]

Model fields: ``--config.model.kwargs.FIELD=VALUE`` sets any field of the
chosen model that ``cnnjax.models.create`` accepts (``width=2``,
``downsample=blur``, ``stage_sizes=(1,1,1,1)``), checked by name and type and
recorded in ``config.json``. ``--config.help`` lists every config key (value
and comment) and the chosen model's fields (type and default), then exits.


Re-running on a work directory that holds a checkpoint resumes from it. On a
finished run (its ``summary.json`` written after the final checkpoint) it
prints ``run already finished at step N — summary.json: test accuracy X; use
--fresh to start over`` and changes nothing on disk. ``--fresh`` starts over
without destroying anything: the old run directory is renamed to
``<workdir>.old-<YYYYmmdd-HHMMSS>`` first. ``--config.strategy=jit`` (or
``shard_map``) picks how the step runs over the devices (README:
Parallelism). All logic lives in ``cnnjax.train.train_and_evaluate``.

Several processes: add ``--config.distributed.coordinator_address=HOST:PORT
--config.distributed.num_processes=N --config.distributed.process_id=I`` (and
``--config.distributed.heartbeat_timeout_s=S``: a lost process ends the others
within about ``S`` seconds); see ``cnnjax.train.distributed``.

Exit status: 0 done; 2 a configuration, data or input mistake (one ``error:``
line, nothing compiled); 1 a checkpoint that could not be written, a NaN/Inf
loss, or processes that lost each other; 128 + signal after SIGTERM/SIGINT
(a checkpoint was written; rerun to resume).
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from cnnjax.train import config as config_lib
from cnnjax.train import distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally with ':variant' (e.g. ':smoke'). "
    "--config.KEY=VALUE overrides a key, --config.model.kwargs.FIELD=VALUE a field of the "
    "model; --config.help lists both (values, types, defaults) and exits.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Run directory (resumes if it holds a checkpoint).")
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over: rename an existing run directory to <workdir>.old-<time> "
    "(nothing is deleted), then train from step 0.")
flags.mark_flags_as_required(["config"])


def _parse(argv):
  try:
    argv, model_overrides = config_lib.split_model_overrides(argv)
    show_help = "--config.help" in argv
    argv = [a for a in argv if a != "--config.help"]
    # config_flags reads its overrides from sys.argv: leave it only what it knows.
    sys.argv[:] = argv
    config_lib.check_override_flags(argv[1:])
    rest = flags.FLAGS(argv)
    config_lib.apply_model_overrides(_CONFIG.value, model_overrides)
    if show_help:
      print(config_lib.describe(_CONFIG.value))
      sys.exit(0)
    # Keys, types and names: checked again by the loop, but here before it is imported.
    config_lib.validate(_CONFIG.value)
    return rest
  except (ValueError, TypeError, flags.Error) as e:
    # e.g. --config.batch_size=abc: one line naming the flag and the value.
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError) as e:
    # --config.a.new_key=...: the command line changes existing keys only.
    print(f"error: no config key {e} to override (from {' '.join(argv[1:])}); the command "
          f"line can change existing keys only (and the model's fields, "
          f"--config.model.kwargs.FIELD=VALUE); --config.help lists them", file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)
  # Imported once the command line has parsed: a mistake in it is reported
  # without loading the loop (orbax, TFDS, plotting), in a second instead of two.
  from cnnjax.train import (  # noqa: PLC0415
      CheckpointError,
      NonFiniteLossError,
      Preempted,
      train_and_evaluate,
  )

  multi_process = False
  try:
    multi_process = distributed.initialize(_CONFIG.value)
    train_and_evaluate(_CONFIG.value, _WORKDIR.value, fresh=_FRESH.value)
  except Preempted as e:
    print(e, file=sys.stderr)
    sys.exit(e.exit_code)
  except (ValueError, TypeError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except (CheckpointError, NonFiniteLossError, distributed.DistributedError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  except jax.errors.JaxRuntimeError as e:
    if not multi_process:
      raise
    # A collective failed because another process is gone. Leave at once: the
    # shutdown barrier would wait distributed.shutdown_timeout_s for it.
    print(f"error: {distributed.lost_process_message(e)}", file=sys.stderr, flush=True)
    os._exit(1)
  distributed.shutdown()


if __name__ == "__main__":
  app.run(main, flags_parser=_parse)
