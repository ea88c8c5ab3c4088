"""DigitsCNN on the embedded digits data set (8x8, 1,437 train / 360 test), on CPU.

Command::

  python experiments/train.py --config experiments/configs/digits_cnn.py --workdir runs/digits

Expected: test accuracy >= 0.98 (0.98-0.99 with seed 0) in about a minute on
two CPU cores, compilation included; a checkpoint at the end of every epoch.

Smoke variant (two epochs, a few seconds; for tests)::

  python experiments/train.py --config experiments/configs/digits_cnn.py:smoke --workdir /tmp/smoke
"""

from cnnjax.train.config import base_config, lock


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name = "digits_cnn"
  c.data.name = "digits"
  c.data.eval_split = "test"
  c.data.test_split = "test"
  c.augment = ""
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_epochs = 30.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0
  c.log_every_steps = 20
  if variant == "smoke":
    c.num_epochs = 2.0
    c.log_every_steps = 5
    c.progress_bar = False
    c.plots = True
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of digits_cnn; expected 'smoke' or none")
  return lock(c)
