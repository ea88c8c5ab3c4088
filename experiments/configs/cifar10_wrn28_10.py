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

from cnnjax.train.config import base_config, lock


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name = "wrn28_10"
  c.model.kwargs.dropout_rate = 0.3
  c.data.name = "cifar10"
  c.augment = "random_crop(padding=4), horizontal_flip"
  c.batch_size = 128
  c.eval_batch_size = 500
  c.num_epochs = 200.0
  c.label_smoothing = 0.0
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "piecewise"
  c.schedule.warmup_epochs = 0.0
  c.schedule.boundaries_epochs = (60.0, 120.0, 160.0)
  c.schedule.decay_factor = 0.2
  c.log_every_steps = 100
  c.checkpoint_every_steps = 1000
  if variant == "smoke":
    c.model.kwargs.depth = 10
    c.model.kwargs.widen_factor = 1
    c.num_epochs = 1.0
    c.data.train_subset = 64
    c.batch_size = 32
    c.eval_batch_size = 32
    c.log_every_steps = 1
    c.progress_bar = False
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of cifar10_wrn28_10; expected 'smoke' or none")
  return lock(c)
