"""Regression on real handwriting: the rotation angle of the embedded ``digits_rotation`` digits.

Every one of scikit-learn's digits, upscaled to 16x16 on a 24x24 canvas and
rotated by a seeded angle in [-45, 45] degrees (``cnnjax.data.digits_rotation``);
DigitsCNN with a one-output regression head (``num_outputs=1``), MSE on the
standardised angle (``target_std`` = 26, the standard deviation of a uniform
angle on [-45, 45]), Adam with a cosine schedule.

Command::

  python experiments/train.py --config experiments/configs/digits_rotation.py --workdir runs/rot

Expected: ``summary.json`` reports ``test_mae`` (degrees), ``test_rmse`` and
``test_r2``; predicting the mean angle gives an MAE of 22.5 degrees (R² 0),
and the recipe is meant to land far below that in a few minutes on two CPU
cores. Measured figures go in the README's table of tasks.

Smoke variant (one epoch; for CI)::

  python experiments/train.py --config experiments/configs/digits_rotation.py:smoke --workdir /tmp/smoke_rot
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.task, c.regression_loss = "regression", "mse"
  c.target_mean, c.target_std = 0.0, 26.0
  c.model.name = "digits_cnn"
  c.model.kwargs = {"num_outputs": 1, "dropout_rate": 0.0}
  c.data.name = "digits_rotation"
  c.data.eval_split = c.data.test_split = "test"
  c.augment = ""  # rotations and flips would change the target
  c.batch_size, c.eval_batch_size, c.num_epochs = 64, 120, 30.0
  recipes.optimizer(c, "adam", 2e-3, weight_decay=0.0, warmup_epochs=1.0)
  c.log_every_steps = 20
  return recipes.finish(c, variant, "digits_rotation", smoke={"overrides": {"plots": True}})
