"""Wide ResNet WRN-28-10 (pre-activation, dropout 0.3) on CIFAR-10 (TFDS ``cifar10``).

The recipe of Zagoruyko & Komodakis, "Wide Residual Networks" (BMVC 2016):
SGD with Nesterov momentum 0.9, learning rate 0.1 multiplied by 0.2 at
epochs 60, 120 and 160, 200 epochs, weight decay 5e-4, batch 128, dropout
0.3 between the convolutions of each block, random crops (4-pixel padding)
and horizontal flips; mean/std normalisation.

Prepare the data once (it downloads)::

  python -m cnnjax.data.prepare cifar10

Command::

  python experiments/train.py --config experiments/configs/cifar10_wrn28_10.py --workdir runs/cifar10_wrn28_10

Expected: the published figure of this recipe is 3.89% test error (96.11%
accuracy) for WRN-28-10 with dropout on CIFAR-10 (Zagoruyko & Komodakis
2016, CIFAR results table; a figure from the paper, not a run of this
code). 36.5 M parameters and about 5.25 GMACs per image: hours on a modern
GPU, far too slow for a CPU; ``--config.model.dtype=bfloat16`` for mixed
precision on GPU/TPU.

Smoke variant (WRN-10-1, one epoch on 64 examples; checks the plumbing, not the figure)::

  python experiments/train.py --config experiments/configs/cifar10_wrn28_10.py:smoke --workdir /tmp/wrn_smoke
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name, c.data.name = "wrn28_10", "cifar10"
  c.model.kwargs.dropout_rate = 0.3
  c.augment = "random_crop(padding=4), horizontal_flip"
  c.batch_size, c.eval_batch_size, c.num_epochs = 128, 500, 200.0
  c.label_smoothing = 0.0
  # The WRN paper's schedule: the rate times 0.2 at epochs 60, 120 and 160.
  recipes.optimizer(c, "sgd", 0.1, schedule="piecewise", momentum=0.9, nesterov=True,
                    weight_decay=5e-4)
  c.schedule.boundaries_epochs, c.schedule.decay_factor = (60.0, 120.0, 160.0), 0.2
  c.log_every_steps, c.checkpoint_every_steps = 100, 1000
  return recipes.finish(c, variant, "cifar10_wrn28_10", smoke={
      "train_subset": 64, "batch_size": 32, "log_every_steps": 1,
      "overrides": {"model.kwargs.depth": 10, "model.kwargs.widen_factor": 1}})
