"""PyTorch (torchvision layout) weights give the same logits in cnnjax."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install cnnjax[torch]")
from torch import nn  # noqa: E402

from cnnjax import models  # noqa: E402
from cnnjax.models.torch_import import load_torch_state_dict  # noqa: E402

# Each test builds a torchvision-sized network in both frameworks (VGG-11-BN: 0.5 GB
# in each); what one test freed is handed back before the next one allocates.
pytestmark = pytest.mark.usefixtures("release_memory_after")


# A ResNet written in plain PyTorch with torchvision's module names.
class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, cin, width, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.relu = nn.ReLU()
    self.downsample = None
    if stride != 1 or cin != width:
      self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False),
                                      nn.BatchNorm2d(width))

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, cin, width, stride):
    super().__init__()
    out = width * 4
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # v1.5: stride on the 3x3.
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, out, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out)
    self.relu = nn.ReLU()
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                      nn.BatchNorm2d(out))

  def forward(self, x):
    y = self.relu(self.bn1(self.conv1(x)))
    y = self.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
  def __init__(self, block, layers, num_classes):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU()
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    cin = 64
    for i, n in enumerate(layers):
      blocks = []
      for j in range(n):
        blocks.append(block(cin, 64 * 2**i, 2 if i > 0 and j == 0 else 1))
        cin = 64 * 2**i * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.avgpool = nn.AdaptiveAvgPool2d(1)
    self.fc = nn.Linear(cin, num_classes)

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    for i in range(1, 5):
      x = getattr(self, f"layer{i}")(x)
    return self.fc(torch.flatten(self.avgpool(x), 1))


def _randomise(net, seed):
  """Random weights and random positive running statistics, so evaluation mode is exercised."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, nn.BatchNorm2d):
        c = module.num_features
        module.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
        module.bias.copy_(torch.randn(c, generator=g) * 0.1)
        module.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
        module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
        module.num_batches_tracked.fill_(7)
  return net.eval()


def _compare(name, block, layers, seed):
  torch.manual_seed(seed)
  net = _randomise(TorchResNet(block, layers, num_classes=10), seed)
  x = np.random.default_rng(seed).normal(size=(2, 3, 64, 64)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x)).numpy()
  variables = load_torch_state_dict(name, net.state_dict())
  model = models.create(name, num_classes=10)
  got = np.asarray(model.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False))
  scale = np.abs(expected).max()
  assert scale > 1e-2  # The comparison is not between two vectors of zeros.
  # Two frameworks' float32 sums through ~20 layers: 1e-4 of the largest logit.
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
  return net, variables


def test_resnet18_logits_match_torch():
  net, variables = _compare("resnet18", BasicBlock, (2, 2, 2, 2), seed=0)
  # Layouts: OIHW -> HWIO, (out, in) -> (in, out); BN into params and batch_stats.
  sd = net.state_dict()
  np.testing.assert_array_equal(variables["params"]["stem"]["conv"]["kernel"],
                                sd["conv1.weight"].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables["params"]["head"]["kernel"], sd["fc.weight"].numpy().T)
  np.testing.assert_array_equal(variables["batch_stats"]["stage2_block0"]["shortcut_norm"]["var"],
                                sd["layer2.0.downsample.1.running_var"].numpy())


@pytest.mark.slow
def test_resnet50_logits_match_torch():
  _compare("resnet50", Bottleneck, (3, 4, 6, 3), seed=1)


@pytest.fixture(scope="module")
def resnet18_state():
  torch.manual_seed(0)
  return _randomise(TorchResNet(BasicBlock, (2, 2, 2, 2), num_classes=7), 0).state_dict()


def test_numpy_arrays_prefix_and_num_classes(resnet18_state):
  as_numpy = {f"module.{k}": v.numpy() for k, v in resnet18_state.items()}
  variables = load_torch_state_dict("resnet18", as_numpy)
  assert variables["params"]["head"]["kernel"].shape == (512, 7)  # Read from fc.weight.
  assert variables["params"]["head"]["kernel"].dtype == jnp.float32


def test_missing_and_unexpected_keys_are_listed(resnet18_state):
  broken = dict(resnet18_state)
  del broken["layer3.1.bn2.running_var"]
  broken["layer5.0.conv1.weight"] = broken["layer4.0.conv1.weight"]
  with pytest.raises(ValueError, match=r"1 missing key\(s\) \['layer3.1.bn2.running_var'\]; "
                                       r"1 unexpected key\(s\) \['layer5.0.conv1.weight'\]"):
    load_torch_state_dict("resnet18", broken)


def test_shape_mismatch_names_the_key_and_both_shapes(resnet18_state):
  broken = dict(resnet18_state)
  broken["layer1.0.conv2.weight"] = torch.zeros(64, 64, 5, 5)
  with pytest.raises(ValueError, match=r"state_dict\['layer1.0.conv2.weight'\] has shape "
                                       r"\(64, 64, 5, 5\); params/stage1_block0/conv2/kernel needs "
                                       r"\(3, 3, 64, 64\) here, i.e. \(64, 64, 3, 3\) in PyTorch"):
    load_torch_state_dict("resnet18", broken)
  with pytest.raises(ValueError, match=r"no PyTorch weight mapping for model 'mobilenet_v2'"):
    load_torch_state_dict("mobilenet_v2", resnet18_state)
  with pytest.raises(TypeError, match="must be a mapping"):
    load_torch_state_dict("resnet18", list(resnet18_state.values()))


@pytest.mark.slow
def test_vgg11_bn_logits_match_torch():
  # torchvision's VGG-11-BN layout, at 32x32 (the adaptive pool replicates the 1x1 map to 7x7).
  torch.manual_seed(2)
  cfg = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
  layers, cin = [], 3
  for v in cfg:
    if v == "M":
      layers.append(nn.MaxPool2d(2, 2))
    else:
      layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
      cin = v
  net = nn.Module()
  net.features = nn.Sequential(*layers)
  net.avgpool = nn.AdaptiveAvgPool2d(7)
  net.classifier = nn.Sequential(nn.Linear(512 * 49, 64), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(64, 64), nn.ReLU(), nn.Dropout(), nn.Linear(64, 5))
  _randomise(net, 2)
  x = np.random.default_rng(2).normal(size=(2, 3, 32, 32)).astype(np.float32)
  with torch.no_grad():
    expected = net.classifier(torch.flatten(net.avgpool(net.features(torch.from_numpy(x))), 1))
  state = net.state_dict()
  with pytest.raises(ValueError, match=r"classifier.3.weight'\] has shape \(64, 64\); params/fc7/kernel"):
    load_torch_state_dict("vgg11_bn", state)  # Our fc6/fc7 have 4096 units, as torchvision's.
  # With torchvision's 4096-unit classifier the logits match.
  net.classifier = nn.Sequential(nn.Linear(512 * 49, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 5)).eval()
  with torch.no_grad():
    expected = net.classifier(torch.flatten(net.avgpool(net.features(torch.from_numpy(x))), 1))
  variables = load_torch_state_dict("vgg11_bn", net.state_dict())
  # The converted copy is all that is needed now: the 4096-unit classifier is 0.5 GB in
  # each framework, and the dense layer's product may copy its kernel once more.
  del net, state
  got = models.create("vgg11_bn", num_classes=5).apply(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
  scale = np.abs(expected.numpy()).max()
  # Two frameworks' float32 sums through 11 layers: 1e-4 of the largest logit.
  np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.slow
def test_alexnet_logits_match_torch():
  # torchvision's AlexNet layout at 127x127: features end at 3x3, so the CHW -> HWC
  # permutation of the first dense layer is exercised across positions.
  torch.manual_seed(3)
  net = nn.Module()
  net.features = nn.Sequential(
      nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
      nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
      nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
      nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
  net.avgpool = nn.AdaptiveAvgPool2d(6)
  net.classifier = nn.Sequential(nn.Dropout(), nn.Linear(256 * 36, 4096), nn.ReLU(), nn.Dropout(),
                                 nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4))
  net.eval()
  x = np.random.default_rng(3).normal(size=(2, 3, 127, 127)).astype(np.float32)
  with torch.no_grad():
    expected = net.classifier(torch.flatten(net.avgpool(net.features(torch.from_numpy(x))), 1))
  variables = load_torch_state_dict("alexnet", net.state_dict())
  got = models.create("alexnet", num_classes=4).apply(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)), train=False)
  scale = np.abs(expected.numpy()).max()
  assert scale > 1e-3
  # Two frameworks' float32 sums through 8 layers (up to 9,216 terms): 1e-4 of the largest logit.
  np.testing.assert_allclose(np.asarray(got), expected.numpy(), rtol=1e-4, atol=1e-4 * scale)
