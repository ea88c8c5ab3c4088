"""LeNet-5 on MNIST (TFDS ``mnist``, 28x28x1, 60,000 train / 10,000 test).

Prepare the data once (it downloads; without internet the command says which
files to place and how)::

  python -m cnnjax.data.prepare mnist

Command::

  python experiments/train.py --config experiments/configs/mnist_lenet5.py --workdir runs/mnist_lenet5

Expected (the published figure, not measured with cnnjax): LeNet-5 reaches
0.9905 test accuracy on MNIST (0.95% error; LeCun et al., 1998). This recipe
trains 10 epochs (about 10 minutes on a laptop CPU). ``'SAME'`` padding keeps
LeNet-5's second 5x5 convolution valid on 28x28 inputs (the original used
32x32).

Smoke variant (one epoch on 1,024 examples)::

  python experiments/train.py --config experiments/configs/mnist_lenet5.py:smoke --workdir /tmp/mnist_smoke

``fashion_mnist_lenet5.py`` is the same recipe on Fashion-MNIST
(``lenet5_config``).
"""

from cnnjax.train.config import base_config, lock


def lenet5_config(data_name: str, num_epochs: float, variant: str | None = None):
  """LeNet-5 (``'SAME'`` padding) with Adam and a cosine schedule on a 28x28x1 data set."""
  c = base_config()
  c.model.name = "lenet5"
  c.model.kwargs = {"padding": "SAME"}
  c.data.name = data_name
  c.batch_size = 128
  c.eval_batch_size = 1000
  c.num_epochs = float(num_epochs)
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
    raise ValueError(
        f"unknown variant {variant!r} of {data_name}_lenet5; expected 'smoke' or none")
  return lock(c)


def get_config(variant: str | None = None):
  return lenet5_config("mnist", num_epochs=10.0, variant=variant)
