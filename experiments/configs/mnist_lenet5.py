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

from cnnjax.train import recipes
from cnnjax.train.config import base_config


def lenet5_config(data_name: str, num_epochs: float, variant: str | None = None):
  """LeNet-5 (``'SAME'`` padding) with Adam and a cosine schedule on a 28x28x1 data set."""
  c = base_config()
  c.model.name, c.model.kwargs = "lenet5", {"padding": "SAME"}
  c.data.name = data_name
  c.batch_size, c.eval_batch_size, c.num_epochs = 128, 1000, float(num_epochs)
  recipes.optimizer(c, "adam", 1e-3, warmup_epochs=0.5)
  c.log_every_steps = 100
  return recipes.finish(c, variant, f"{data_name}_lenet5", smoke={
      "train_subset": 1024, "batch_size": 32, "log_every_steps": 8})


def get_config(variant: str | None = None):
  return lenet5_config("mnist", num_epochs=10.0, variant=variant)
