"""LeNet-5 on Fashion-MNIST (TFDS ``fashion_mnist``, 28x28x1, 60,000 train / 10,000 test).

Prepare the data once (it downloads)::

  python -m cnnjax.data.prepare fashion_mnist

Command::

  python experiments/train.py --config experiments/configs/fashion_mnist_lenet5.py --workdir runs/fashion_mnist_lenet5

Expected: test accuracy about 0.90 after 20 epochs (about 10 minutes on a
laptop CPU, under a minute on one GPU). ``'SAME'`` padding keeps LeNet-5's
second 5x5 convolution valid on 28x28 inputs (the original used 32x32).

Smoke variant (one epoch on 1,024 examples)::

  python experiments/train.py --config experiments/configs/fashion_mnist_lenet5.py:smoke --workdir /tmp/fashion_mnist_smoke
"""

from cnnjax.train.config import base_config, lock


def get_config(variant: str | None = None):
  c = base_config()
  c.model.name = "lenet5"
  c.model.kwargs = {"padding": "SAME"}
  c.data.name = "fashion_mnist"
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = 20.0
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 0.5
  c.log_every_steps = 100
  if variant == "smoke":
    c.num_epochs = 1.0
    c.data.train_subset = 1024
    c.batch_size = 32
    c.eval_batch_size = 32
    c.log_every_steps = 8
    c.progress_bar = False
  elif variant:
    raise ValueError(f"unknown variant {variant!r} of fashion_mnist_lenet5; expected 'smoke' or none")
  return lock(c)
