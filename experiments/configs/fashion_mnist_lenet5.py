"""LeNet-5 on Fashion-MNIST (TFDS ``fashion_mnist``, 28x28x1, 60,000 train / 10,000 test).

The recipe of ``mnist_lenet5.py`` (``lenet5_config``) trained 20 epochs.
Prepare the data once (it downloads; without internet the command says which
files to place and how)::

  python -m cnnjax.data.prepare fashion_mnist

Command::

  python experiments/train.py --config experiments/configs/fashion_mnist_lenet5.py --workdir runs/fashion_mnist_lenet5

Expected (published figures, not measured with cnnjax): small two-layer
CNNs are reported at about 0.88-0.92 test accuracy on Fashion-MNIST (the
benchmark table of zalandoresearch/fashion-mnist; Xiao et al., 2017). 20
epochs take about 20 minutes on a laptop CPU.

Smoke variant (one epoch on 1,024 examples)::

  python experiments/train.py --config experiments/configs/fashion_mnist_lenet5.py:smoke --workdir /tmp/fashion_mnist_smoke
"""

import importlib.util
import os

# Config files are loaded by path, not as a package: load the sibling the same way.
_spec = importlib.util.spec_from_file_location(
    "mnist_lenet5", os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist_lenet5.py"))
_mnist = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mnist)


def get_config(variant: str | None = None):
  return _mnist.lenet5_config("fashion_mnist", num_epochs=20.0, variant=variant)
