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

from cnnjax.train.config import base_config, lock


def get_config(variant: str | None = None):
  c = base_config()
  c.task = "regression"
  c.regression_loss = "mse"
  c.target_mean = 0.0
  c.target_std = 26.0
  c.model.name = "digits_cnn"
  c.model.kwargs = {"num_outputs": 1, "dropout_rate": 0.0}
  c.data.name = "digits_rotation"
  c.data.eval_split = "test"
  c.data.test_split = "test"
  c.augment = ""  # rotations and flips would change the target
  c.batch_size = 64
  c.eval_batch_size = 120
  c.num_epochs = 30.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 2e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0
  c.log_every_steps = 20
  if variant == "smoke":
    c.num_epochs = 1.0
    c.log_every_steps = 5
    c.progress_bar = False
    c.plots = True
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of digits_rotation; expected 'smoke' or none")
  return lock(c)
