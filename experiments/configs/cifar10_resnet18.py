"""ResNet-18 (CIFAR stem: 3x3 conv, no max-pool) on CIFAR-10 (TFDS ``cifar10``).

Prepare the data once (it downloads)::

  python -m cnnjax.data.prepare cifar10

Command::

  python experiments/train.py --config experiments/configs/cifar10_resnet18.py --workdir runs/cifar10_resnet18

Expected (the published figure of this recipe, not measured with cnnjax):
test accuracy about 0.95 after 200 epochs with SGD, Nesterov momentum,
weight decay 5e-4, cosine schedule, random crops and flips (about 1.5 hours
on one modern GPU; far too slow for a CPU). Use
``--config.model.dtype=bfloat16`` for mixed precision on GPU/TPU.

Smoke variant (a few steps on 256 examples)::

  python experiments/train.py --config experiments/configs/cifar10_resnet18.py:smoke --workdir /tmp/cifar_smoke
"""

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name, c.data.name = "resnet18_cifar", "cifar10"
  c.augment = "random_crop(padding=4), horizontal_flip"
  c.batch_size, c.eval_batch_size, c.num_epochs = 128, 500, 200.0
  c.label_smoothing = 0.0
  recipes.optimizer(c, "sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                    warmup_epochs=1.0)
  c.log_every_steps, c.checkpoint_every_steps = 100, 1000
  return recipes.finish(c, variant, "cifar10_resnet18", smoke={
      "train_subset": 256, "batch_size": 64, "log_every_steps": 2})
