"""Parameter counts pinned to torchvision's at 1000 classes and 224x224 inputs."""

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models


def _params(name, shape=(1, 224, 224, 3), **kw):
  model = models.create(name, **kw)
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))
  return sum(v.size for v in jax.tree.leaves(variables["params"])), variables


@pytest.mark.parametrize("name,count", [
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("mobilenet_v2", 3_504_872),
    ("alexnet", 61_100_840),
    ("vgg11", 132_863_336),
    ("vgg16", 138_357_544),
    ("vgg11_bn", 132_868_840),
    ("vgg16_bn", 138_365_992),
])
def test_torchvision_parameter_counts(name, count):
  n, variables = _params(name)
  assert n == count
  assert variables["params"]["head"]["kernel"].shape[-1] == 1000


def test_googlenet_count_is_torchvision_plus_true_5x5():
  # torchvision's GoogLeNet (no aux heads) has 6,624,904 parameters but uses 3x3
  # kernels where the paper has 5x5; ours has 5x5, 16 more weights per pair.
  pairs = sum(r[3] * r[4] for stage in models.GOOGLENET_CONFIG for r in stage)
  n, _ = _params("googlenet")
  assert n == 6_624_904 + 16 * pairs == 7_005_832


def test_batch_stats_are_not_params():
  _, variables = _params("resnet18_cifar", (1, 32, 32, 3))
  stats = sum(v.size for v in jax.tree.leaves(variables["batch_stats"]))
  scales = sum(v.size for p, v in jax.tree_util.tree_leaves_with_path(variables["params"])
               if p[-1].key == "scale")
  assert stats == 2 * scales == 9600  # a mean and a var per normalised channel
  n, _ = _params("resnet18_cifar", (1, 32, 32, 3))
  assert n == 11_173_962  # 9,600 statistics are not counted
  assert variables["batch_stats"]["stem"]["norm"]["mean"].shape == (64,)


def test_cifar_stem_has_no_pool_and_3x3_conv():
  _, variables = _params("resnet18_cifar", (1, 32, 32, 3))
  assert variables["params"]["stem"]["conv"]["kernel"].shape == (3, 3, 3, 64)
  n, _ = _params("resnet18_cifar", (1, 32, 32, 3), num_classes=1000)
  # Only the stem differs from ResNet-18: 7x7x3x64 -> 3x3x3x64.
  assert n == 11_689_512 - (49 - 9) * 3 * 64


def test_mobilenet_width_multiplier():
  n_half, v = _params("mobilenet_v2", (1, 32, 32, 3), width_multiplier=0.5)
  assert v["params"]["stem"]["conv"]["kernel"].shape[-1] == 16
  assert v["params"]["last_conv"]["conv"]["kernel"].shape[-1] == 1280  # never below 1280
  assert n_half < 3_504_872
  assert models.make_divisible(32 * 0.35) == 16 and models.make_divisible(1280 * 1.4) == 1792
