"""DigitsCNN on the embedded digits data set (8x8, 1,437 train / 360 test), on CPU.

Command::

  python experiments/train.py --config experiments/configs/digits_cnn.py --workdir runs/digits

Expected: test accuracy >= 0.98 (0.98-0.99 with seed 0) in about a minute on
two CPU cores, compilation included; a checkpoint at the end of every epoch.

Smoke variant (two epochs, a few seconds; for tests)::

  python experiments/train.py --config experiments/configs/digits_cnn.py:smoke --workdir /tmp/smoke
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name, c.data.name = "digits_cnn", "digits"
  c.data.eval_split = c.data.test_split = "test"
  c.augment = ""
  c.batch_size, c.eval_batch_size, c.num_epochs = 64, 120, 30.0
  recipes.optimizer(c, "sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                    warmup_epochs=1.0)
  c.log_every_steps = 20
  return recipes.finish(c, variant, "digits_cnn", smoke={
      "num_epochs": 2.0, "overrides": {"plots": True}})
