"""The two LeNet-5 configs are one recipe on two data sets."""

import os

from cnnjax.train import config as config_lib
from testlib import load_file

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "experiments", "configs")


def _load(name):
  return load_file(os.path.join(CONFIGS, f"{name}.py"))


def test_mnist_and_fashion_mnist_share_one_definition():
  mnist, fashion = _load("mnist_lenet5"), _load("fashion_mnist_lenet5")
  assert not hasattr(fashion, "base_config")  # Nothing of the recipe is written twice.
  for variant in (None, "smoke"):
    a = config_lib.to_dict(mnist.get_config(variant))
    b = config_lib.to_dict(fashion.get_config(variant))
    assert a["data"].pop("name") == "mnist" and b["data"].pop("name") == "fashion_mnist"
    if variant is None:
      assert (a.pop("num_epochs"), b.pop("num_epochs")) == (10.0, 20.0)
    assert a == b
