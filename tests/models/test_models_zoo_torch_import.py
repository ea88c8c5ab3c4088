"""torchvision-layout PyTorch networks of the newer families give the same logits in cnnjax.

Each PyTorch network is written here by hand with torchvision's module
names (so ``state_dict`` keys are torchvision's), at small depths and widths
that the cnnjax models reach through their fields; the full-size layouts are
checked by the parameter counts in ``test_models_zoo.py``. Weights and
running statistics are random, so every layer and both norms' evaluation
forms are exercised.
"""

from collections import OrderedDict

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is an optional extra: pip install cnnjax[torch]")
from torch import nn  # noqa: E402

from cnnjax import models  # noqa: E402
from cnnjax.models.torch_import import load_torch_state_dict  # noqa: E402
from testlib import compile_fast  # noqa: E402


def _apply(model, variables, x):
  """Evaluation-mode logits, jitted: eager dispatch of the im2col lowerings is far slower."""
  return compile_fast(lambda v, x: model.apply(v, x, train=False), variables, x)(variables, x)


def _randomise(net, seed):
  """Random weights everywhere, positive running variances, O(1) layer scales; evaluation mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith("layer_scale"):
        p.copy_(torch.rand(p.shape, generator=g) + 0.5)
    for module in net.modules():
      if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
        c = module.weight.shape[0]
        module.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.75)
        module.bias.copy_(torch.randn(c, generator=g) * 0.1)
      if isinstance(module, nn.BatchNorm2d):
        module.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
        module.running_var.copy_(torch.rand(c, generator=g) + 0.5)
      if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
        module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
  return net.eval()


def _check(name, net, seed, size=32, **fields):
  _randomise(net, seed)
  x = np.random.default_rng(seed).normal(size=(2, 3, size, size)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x)).numpy()
  variables = load_torch_state_dict(name, net.state_dict(), **fields)
  model = models.create(name, num_classes=expected.shape[1], **fields)
  got = np.asarray(_apply(model, variables, jnp.asarray(x.transpose(0, 2, 3, 1))))
  scale = np.abs(expected).max()
  assert scale > 1e-2  # Not a comparison of two vectors of near-zeros.
  # float32 on both sides, different summation orders over a few thousand terms
  # per output and ~10 layers: relative errors ~1e-6 per layer; 1e-4 of the
  # largest logit leaves a wide margin and still catches any wrong weight.
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)
  return variables


class LayerNorm2d(nn.LayerNorm):
  def forward(self, x):
    return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Permute(nn.Module):
  def __init__(self, dims):
    super().__init__()
    self.dims = dims

  def forward(self, x):
    return x.permute(*self.dims)


class CNBlock(nn.Module):
  def __init__(self, dim):
    super().__init__()
    self.block = nn.Sequential(
        nn.Conv2d(dim, dim, 7, padding=3, groups=dim), Permute((0, 2, 3, 1)),
        nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim),
        Permute((0, 3, 1, 2)))
    self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * 1e-6)

  def forward(self, x):
    return x + self.layer_scale * self.block(x)


def test_convnext_logits_match_torch():
  depths, dims = (1, 1, 2, 1), (8, 16, 24, 32)
  torch.manual_seed(0)
  features = [nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))]
  for i, (depth, dim) in enumerate(zip(depths, dims)):
    if i > 0:
      features.append(nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6),
                                    nn.Conv2d(dims[i - 1], dim, 2, 2)))
    features.append(nn.Sequential(*[CNBlock(dim) for _ in range(depth)]))
  net = nn.Module()
  net.features = nn.Sequential(*features)
  net.avgpool = nn.AdaptiveAvgPool2d(1)
  net.classifier = nn.Sequential(LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(1),
                                 nn.Linear(dims[-1], 5))
  net.forward = lambda x: net.classifier(net.avgpool(net.features(x)))
  variables = _check("convnext_tiny", net, 0, depths=depths, dims=dims)
  gamma = net.state_dict()["features.5.1.layer_scale"].numpy()
  np.testing.assert_array_equal(variables["params"]["stage3_block1"]["layer_scale"]["gamma"],
                                gamma[:, 0, 0])


class GroupedBottleneck(nn.Module):
  def __init__(self, cin, planes, stride, groups, base_width):
    super().__init__()
    width, out = int(planes * base_width / 64) * groups, planes * 4
    self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, out, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out)
    self.downsample = None
    if stride != 1 or cin != out:
      self.downsample = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                      nn.BatchNorm2d(out))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


@pytest.mark.parametrize("name,groups,base_width", [("resnext50_32x4d", 32, 4),
                                                    ("wide_resnet50_2", 1, 128)])
def test_grouped_and_wide_resnets_match_torch(name, groups, base_width):
  torch.manual_seed(1)
  net = nn.Module()
  filters = 16
  net.conv1 = nn.Conv2d(3, filters, 7, 2, 3, bias=False)
  net.bn1 = nn.BatchNorm2d(filters)
  cin = filters
  for i in range(4):
    block = GroupedBottleneck(cin, filters * 2**i, 1 if i == 0 else 2, groups, base_width)
    setattr(net, f"layer{i + 1}", nn.Sequential(block))
    cin = filters * 2**i * 4
  net.fc = nn.Linear(cin, 6)

  def forward(x):
    x = nn.functional.max_pool2d(torch.relu(net.bn1(net.conv1(x))), 3, 2, 1)
    for i in range(1, 5):
      x = getattr(net, f"layer{i}")(x)
    return net.fc(x.mean((2, 3)))

  net.forward = forward
  variables = _check(name, net, 1, stage_sizes=(1, 1, 1, 1), num_filters=filters)
  kernel = variables["params"]["stage2_block0"]["conv2"]["kernel"]
  width = int(32 * base_width / 64) * groups
  assert kernel.shape == (3, 3, width // groups, width)  # Grouped HWIO: C_in / groups.


def _conv_bn_act(cin, cout, k, stride=1, groups=1, act=True):
  layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]
  return nn.Sequential(*(layers + [nn.SiLU()] if act else layers))


class SqueezeExcitation(nn.Module):
  def __init__(self, channels, squeeze):
    super().__init__()
    self.fc1 = nn.Conv2d(channels, squeeze, 1)
    self.fc2 = nn.Conv2d(squeeze, channels, 1)

  def forward(self, x):
    s = self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3), keepdim=True))))
    return x * torch.sigmoid(s)


class MBConv(nn.Module):
  def __init__(self, expand, kernel, stride, cin, cout):
    super().__init__()
    hidden = cin * expand
    layers = [] if hidden == cin else [_conv_bn_act(cin, hidden, 1)]
    layers += [_conv_bn_act(hidden, hidden, kernel, stride, hidden),
               SqueezeExcitation(hidden, max(1, cin // 4)),
               _conv_bn_act(hidden, cout, 1, act=False)]
    self.block = nn.Sequential(*layers)
    self.residual = stride == 1 and cin == cout

  def forward(self, x):
    y = self.block(x)
    return x + y if self.residual else y


def test_efficientnet_logits_match_torch():
  stages = ((1, 3, 1, 16, 8, 1), (6, 5, 2, 8, 16, 2), (6, 3, 2, 16, 24, 1))
  torch.manual_seed(2)
  features = [_conv_bn_act(3, 16, 3, 2)]
  for expand, kernel, stride, cin, cout, n in stages:
    features.append(nn.Sequential(*[MBConv(expand, kernel, stride if j == 0 else 1,
                                           cin if j == 0 else cout, cout) for j in range(n)]))
  features.append(_conv_bn_act(24, 96, 1))
  net = nn.Module()
  net.features = nn.Sequential(*features)
  net.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(96, 4))
  net.forward = lambda x: net.classifier(net.features(x).mean((2, 3)))
  variables = _check("efficientnet_b0", net, 2, stages=stages)
  # The first block has no expansion: its depthwise convolution is block.0.
  np.testing.assert_array_equal(
      variables["params"]["stage1_block0"]["depthwise"]["conv"]["kernel"],
      net.state_dict()["features.1.0.block.0.0.weight"].numpy().transpose(2, 3, 1, 0))


def test_densenet_logits_match_torch():
  growth, bn_size, init, blocks = 8, 2, 16, (2, 3)
  torch.manual_seed(3)

  def dense_layer(cin):
    layer = nn.Module()
    layer.norm1, layer.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, bn_size * growth, 1, bias=False)
    layer.norm2 = nn.BatchNorm2d(bn_size * growth)
    layer.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)
    layer.forward = lambda x: layer.conv2(torch.relu(layer.norm2(layer.conv1(
        torch.relu(layer.norm1(x))))))
    return layer

  modules, c = [("conv0", nn.Conv2d(3, init, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(init)),
                ("relu0", nn.ReLU()), ("pool0", nn.MaxPool2d(3, 2, 1))], init
  for i, n in enumerate(blocks):
    block = nn.Module()
    for j in range(n):
      block.add_module(f"denselayer{j + 1}", dense_layer(c + j * growth))

    def forward(x, block=block):
      for layer in block.children():
        x = torch.cat([x, layer(x)], 1)
      return x

    block.forward = forward
    modules.append((f"denseblock{i + 1}", block))
    c += n * growth
    if i < len(blocks) - 1:
      modules.append((f"transition{i + 1}", nn.Sequential(OrderedDict(
          norm=nn.BatchNorm2d(c), relu=nn.ReLU(), conv=nn.Conv2d(c, c // 2, 1, bias=False),
          pool=nn.AvgPool2d(2, 2)))))
      c //= 2
  modules.append(("norm5", nn.BatchNorm2d(c)))
  net = nn.Module()
  net.features = nn.Sequential(OrderedDict(modules))
  net.classifier = nn.Linear(c, 3)
  net.forward = lambda x: net.classifier(torch.relu(net.features(x)).mean((2, 3)))
  _check("densenet121", net, 3, block_config=blocks, growth_rate=growth, bn_size=bn_size,
         num_init_features=init)


def test_mismatch_names_first_differing_arrays():
  net = nn.Module()
  net.fc = nn.Linear(4, 2)
  with pytest.raises(ValueError, match=r"first differing arrays: expected 'classifier.0.bias' of "
                                       r"shape \(32,\), the file has 'fc.bias' of shape \(2,\)"):
    load_torch_state_dict("convnext_tiny", net.state_dict(), num_classes=2,
                          depths=(1, 1, 1, 1), dims=(8, 16, 24, 32))
