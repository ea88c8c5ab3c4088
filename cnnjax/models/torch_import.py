"""Pretrained PyTorch (torchvision) weights into cnnjax models.

``load_torch_state_dict('resnet50', torch.load('resnet50.pth'))`` returns
the ``{'params': ..., 'batch_stats': ...}`` of ``models.create('resnet50')``
holding the same weights, so that the two networks compute the same logits
(in evaluation mode) on the same images, NCHW there and NHWC here.

Names follow torchvision's modules; layouts are converted:

==========================  ===============================  ==========================
PyTorch (torchvision)       cnnjax                           conversion
==========================  ===============================  ==========================
``Conv2d.weight``           ``Conv.kernel``                  OIHW -> HWIO
``Conv2d.bias``             ``Conv.bias``                    as is
``Linear.weight``           ``Dense.kernel``                 ``(out, in)`` -> ``(in, out)``
``BatchNorm2d.weight/bias``  ``params``: ``scale``/``bias``    as is
``running_mean/var``        ``batch_stats``: ``mean``/``var``  as is
``num_batches_tracked``     (ignored)
==========================  ===============================  ==========================

The first dense layer of AlexNet and VGG reads flattened features: PyTorch
flattens ``(C, H, W)``, cnnjax ``(H, W, C)``, so its input axis is permuted
as well. Module names (torchvision -> cnnjax): ResNet ``conv1``/``bn1`` ->
``stem/conv``/``stem/norm``, ``layer{i}.{j}.conv{k}``/``bn{k}`` ->
``stage{i}_block{j}/conv{k}``/``norm{k}``, ``downsample.0``/``.1`` ->
``shortcut_conv``/``shortcut_norm``, ``fc`` -> ``head``; AlexNet and VGG
``features.{n}`` -> ``conv{i}/conv`` or ``stage{i}_conv{j}/conv|norm``,
``classifier.{n}`` -> ``fc6``, ``fc7``, ``head``. ResNeXt and Wide
ResNet-50 use ResNet's names. ConvNeXt ``features.0.{0,1}`` -> ``stem``,
``features.{2i-2}.{0,1}`` -> ``stage{i}_reduce_norm``/``_conv``,
``features.{2i-1}.{j}.block.{0,2,3,5}`` -> ``stage{i}_block{j}/depthwise``,
``norm``, ``pwconv1``, ``pwconv2`` (its ``nn.Linear`` ``(out, in)`` become
1x1 kernels ``(1, 1, in, out)``), ``...layer_scale`` ``(C, 1, 1)`` ->
``layer_scale/gamma`` ``(C,)``, ``classifier.{0,2}`` -> ``head_norm``,
``head``; LayerNorm ``weight``/``bias`` -> ``scale``/``bias``.
EfficientNet ``features.{i}.{j}.block.{k}`` -> ``stage{i}_block{j}/expand``,
``depthwise``, ``se`` (``fc1``, ``fc2``), ``project`` (``k`` counts from the
depthwise when there is no expansion), ``features.{last}`` ->
``last_conv``, ``classifier.1`` -> ``head``. DenseNet ``features.conv0``/
``norm0`` -> ``stem``, ``features.denseblock{i}.denselayer{j}.*`` ->
``block{i}/layer{j}/*``, ``features.transition{i}.*`` ->
``transition{i}/*``, ``features.norm5`` -> ``final_norm``, ``classifier``
-> ``head``.

PyTorch is not needed: a state dict of numpy arrays loads as well (torch
tensors are converted with ``.detach().cpu().float().numpy()``). To read a
``.pth`` file, install the optional extra, ``pip install cnnjax[torch]``.

The images must be preprocessed as for the PyTorch model (torchvision's
ImageNet weights expect RGB in ``[0, 1]`` normalised by mean
``(0.485, 0.456, 0.406)`` and std ``(0.229, 0.224, 0.225)``), channels last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnjax.models.registry import create, spec

PyTree = Any
Path = tuple[str, ...]

#: torchvision ``features`` index of AlexNet's five convolutions.
_ALEXNET_FEATURES = (0, 3, 6, 8, 10)
#: torchvision ``classifier`` index of the three dense layers: AlexNet, VGG.
_ALEXNET_CLASSIFIER = {"fc6": 1, "fc7": 4, "head": 6}
_VGG_CLASSIFIER = {"fc6": 0, "fc7": 3, "head": 6}
#: ``(C, H, W)`` that the first dense layer flattens.
_FLATTENED = {"alexnet": (256, 6, 6), "vgg": (512, 7, 7)}

SUPPORTED = ("resnet18", "resnet34", "resnet50", "resnet18_cifar", "resnet34_cifar",
             "resnet50_cifar", "resnext50_32x4d", "wide_resnet50_2", "alexnet", "vgg11", "vgg16",
             "vgg11_bn", "vgg16_bn", "convnext_tiny", "efficientnet_b0", "densenet121")

#: The torchvision key of the classifier's weight, per family (its rows are the classes).
_CLASSIFIER = {"resnet": "fc.weight", "alexnet": "classifier.6.weight",
               "vgg": "classifier.6.weight", "convnext": "classifier.2.weight",
               "efficientnet": "classifier.1.weight", "densenet": "classifier.weight"}


def _family(model_name: str) -> str:
  if model_name.startswith(("resnet", "resnext", "wide_resnet")):
    return "resnet"
  for family in ("vgg", "convnext", "efficientnet", "densenet"):
    if model_name.startswith(family):
      return family
  return model_name


def _resnet_name(path: Path) -> str | None:
  if path == ("stem", "conv"):
    return "conv1"
  if path == ("stem", "norm"):
    return "bn1"
  if path == ("head",):
    return "fc"
  if len(path) != 2:
    return None
  match = re.fullmatch(r"stage(\d+)_block(\d+)", path[0])
  if not match:
    return None
  block = f"layer{match[1]}.{match[2]}"
  part = path[1]
  if part == "shortcut_conv":
    return f"{block}.downsample.0"
  if part == "shortcut_norm":
    return f"{block}.downsample.1"
  match = re.fullmatch(r"(conv|norm)(\d)", part)
  if not match:
    return None
  return f"{block}.{'conv' if match[1] == 'conv' else 'bn'}{match[2]}"


def _alexnet_name(path: Path) -> str | None:
  if len(path) == 1 and path[0] in _ALEXNET_CLASSIFIER:
    return f"classifier.{_ALEXNET_CLASSIFIER[path[0]]}"
  match = re.fullmatch(r"conv(\d)", path[0])
  if match and path[1:] == ("conv",) and 1 <= int(match[1]) <= 5:
    return f"features.{_ALEXNET_FEATURES[int(match[1]) - 1]}"
  return None


def _convnext_name(path: Path) -> str | None:
  """ConvNeXt: ``features.{0, 2, 4, 6}`` stem and reductions, ``features.{1, 3, 5, 7}.{j}``."""
  if path in (("stem", "conv"), ("stem", "norm")):
    return f"features.0.{0 if path[1] == 'conv' else 1}"
  if path == ("head_norm",):
    return "classifier.0"
  if path == ("head",):
    return "classifier.2"
  match = re.fullmatch(r"stage(\d+)_reduce_(norm|conv)", path[0])
  if match and len(path) == 1:
    return f"features.{2 * (int(match[1]) - 1)}.{0 if match[2] == 'norm' else 1}"
  match = re.fullmatch(r"stage(\d+)_block(\d+)", path[0])
  parts = {"depthwise": "block.0", "norm": "block.2", "pwconv1": "block.3", "pwconv2": "block.5",
           "layer_scale": "layer_scale"}
  if match and len(path) == 2 and path[1] in parts:
    return f"features.{2 * int(match[1]) - 1}.{match[2]}.{parts[path[1]]}"
  return None


def _efficientnet_names(paths: list[Path]) -> dict[Path, str]:
  """EfficientNet: ``features.{i}.{j}.block.{k}``, where ``k`` counts the block's layers.

  A block without expansion (ratio 1) starts at its depthwise convolution,
  so the positions of the later layers depend on the block.
  """
  stages = {int(m[1]) for p in paths if (m := re.fullmatch(r"stage(\d+)_block\d+", p[0]))}
  names: dict[Path, str] = {("stem", "conv"): "features.0.0", ("stem", "norm"): "features.0.1",
                            ("last_conv", "conv"): f"features.{len(stages) + 1}.0",
                            ("last_conv", "norm"): f"features.{len(stages) + 1}.1",
                            ("head",): "classifier.1"}
  blocks = {p[0] for p in paths if re.fullmatch(r"stage\d+_block\d+", p[0])}
  for block in blocks:
    i, j = re.fullmatch(r"stage(\d+)_block(\d+)", block).groups()
    first = 1 if (block, "expand", "conv") in paths else 0
    base = f"features.{i}.{j}.block"
    for part, index in (("expand", 0), ("depthwise", first), ("project", first + 2)):
      names[(block, part, "conv")] = f"{base}.{index}.0"
      names[(block, part, "norm")] = f"{base}.{index}.1"
    names[(block, "se", "fc1")] = f"{base}.{first + 1}.fc1"
    names[(block, "se", "fc2")] = f"{base}.{first + 1}.fc2"
  return names


def _densenet_name(path: Path) -> str | None:
  """DenseNet: ``features.conv0``, ``features.denseblock{i}.denselayer{j}.*``, transitions."""
  simple = {("stem", "conv"): "features.conv0", ("stem", "norm"): "features.norm0",
            ("final_norm",): "features.norm5", ("head",): "classifier"}
  if path in simple:
    return simple[path]
  match = re.fullmatch(r"block(\d+)", path[0])
  if match and len(path) == 3 and re.fullmatch(r"layer\d+", path[1]):
    return f"features.denseblock{match[1]}.dense{path[1]}.{path[2]}"
  match = re.fullmatch(r"transition(\d+)", path[0])
  if match and len(path) == 2:
    return f"features.transition{match[1]}.{path[1]}"
  return None


def _vgg_names(paths: list[Path]) -> dict[Path, str]:
  """``features`` indices of VGG's convolutions and norms, counted as torchvision's ``Sequential``."""
  convs = {}
  for path in paths:
    match = re.fullmatch(r"stage(\d+)_conv(\d+)", path[0])
    if match:
      convs.setdefault((int(match[1]), int(match[2])), set()).add(path[1:])
  names: dict[Path, str] = {}
  index = 0
  for stage in sorted({s for s, _ in convs}):
    for conv in sorted(c for s, c in convs if s == stage):
      parts = convs[(stage, conv)]
      prefix = f"stage{stage}_conv{conv}"
      names[(prefix, "conv")] = f"features.{index}"
      if ("norm",) in parts:
        names[(prefix, "norm")] = f"features.{index + 1}"
        index += 3  # Conv2d, BatchNorm2d, ReLU.
      else:
        index += 2  # Conv2d, ReLU.
    index += 1  # MaxPool2d.
  for name, i in _VGG_CLASSIFIER.items():
    names[(name,)] = f"classifier.{i}"
  return names


def _to_numpy(value: Any, key: str) -> np.ndarray:
  if hasattr(value, "detach"):  # A torch tensor (bfloat16 has no numpy dtype: go via float32).
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    value = value.numpy()
  if not hasattr(value, "shape"):
    raise TypeError(f"state_dict[{key!r}] must be a torch tensor or an array, got "
                    f"{type(value).__name__}")
  return np.asarray(value)


def _modules(abstract: PyTree) -> dict[Path, dict[str, dict[str, Any]]]:
  """``{module path: {collection: {leaf name: ShapeDtypeStruct}}}`` of a variable tree."""
  out: dict[Path, dict[str, dict[str, Any]]] = {}
  for collection, tree in abstract.items():
    for path, leaf in traverse_util.flatten_dict(dict(tree)).items():
      out.setdefault(path[:-1], {}).setdefault(collection, {})[path[-1]] = leaf
  return out


def _classifier_key(model_name: str) -> str:
  return _CLASSIFIER[_family(model_name)]


class _Copier:
  """Copies a PyTorch state dict into flat linen variables, module by module.

  Records every key it expects (with its PyTorch shape) and every array whose
  shape does not fit; ``check`` raises one ``ValueError`` naming them.
  """

  def __init__(self, state: dict[str, Any]):
    self.state = state
    self.flat: dict[tuple[str, ...], jax.Array] = {}
    self.expected_shapes: dict[str, tuple[int, ...]] = {}
    self.problems: list[str] = []

  def take(self, key: str, target: Path, leaf: Any, convert) -> None:
    """``state[key]`` converted into ``target`` (shape of ``leaf``), if present and fitting."""
    self.expected_shapes[key] = _torch_shape(leaf.shape, convert)
    if key not in self.state:
      return
    value = _to_numpy(self.state[key], key)
    try:
      converted = convert(value)
    except ValueError:
      converted = None
    if converted is None or converted.shape != leaf.shape:
      self.problems.append(
          f"state_dict[{key!r}] has shape {value.shape}; {'/'.join(target)} needs "
          f"{tuple(leaf.shape)} here, i.e. {_torch_shape(leaf.shape, convert)} in PyTorch")
      return
    self.flat[target] = jnp.asarray(converted, leaf.dtype)

  def copy_module(self, prefix: str, path: Path, collections: dict[str, Any], family: str) -> None:
    """The arrays of one linen module (a norm, a LayerScale, a conv or a dense layer)."""
    params = collections.get("params", {})
    stats = collections.get("batch_stats", {})
    if "scale" in params:  # BatchNorm (with statistics) or LayerNorm.
      self.take(f"{prefix}.weight", ("params", *path, "scale"), params["scale"], _same)
      self.take(f"{prefix}.bias", ("params", *path, "bias"), params["bias"], _same)
      if "mean" in stats:
        self.take(f"{prefix}.running_mean", ("batch_stats", *path, "mean"), stats["mean"], _same)
        self.take(f"{prefix}.running_var", ("batch_stats", *path, "var"), stats["var"], _same)
      return
    if set(params) == {"gamma"}:  # LayerScale: a bare nn.Parameter named by the prefix.
      self.take(prefix, ("params", *path, "gamma"), params["gamma"], _layer_scale)
      return
    kernel = params["kernel"]
    if kernel.ndim == 4:
      convert = _conv_kernel
    elif path == ("fc6",) and family in _FLATTENED:
      convert = _flattened_dense(_FLATTENED[family])
    else:
      convert = _dense_kernel
    self.take(f"{prefix}.weight", ("params", *path, "kernel"), kernel, convert)
    if "bias" in params:
      self.take(f"{prefix}.bias", ("params", *path, "bias"), params["bias"], _same)

  def check(self, model_name: str) -> None:
    """A ``ValueError`` for missing or unexpected keys, then for shapes that do not fit."""
    state, expected = self.state, set(self.expected_shapes)
    ignored = {k for k in state if k.endswith(".num_batches_tracked")}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected - ignored)
    if missing or unexpected:
      first = []
      if missing:
        first.append(f"expected {missing[0]!r} of shape {self.expected_shapes[missing[0]]}")
      if unexpected:
        first.append(f"the file has {unexpected[0]!r} of shape "
                     f"{tuple(_to_numpy(state[unexpected[0]], unexpected[0]).shape)}")
      raise ValueError(
          f"state dict does not match {model_name} (torchvision layout): "
          f"{len(missing)} missing key(s) {_head_list(missing)}; {len(unexpected)} unexpected "
          f"key(s) {_head_list(unexpected)}; first differing arrays: {', '.join(first)}")
    problems = self.problems
    if problems:
      raise ValueError(f"state dict does not match {model_name}: " + "; ".join(problems[:8])
                       + (f"; and {len(problems) - 8} more" if len(problems) > 8 else ""))


def load_torch_state_dict(model_name: str, state_dict: Mapping[str, Any], *,
                          num_classes: int | None = None, **fields: Any) -> dict[str, Any]:
  """Converts a torchvision ``state_dict`` into the variables of ``models.create(model_name)``.

  Example::

    import torch
    from cnnjax import models
    variables = models.load_torch_state_dict('resnet18', torch.load('resnet18.pth'))
    model = models.create('resnet18', num_classes=1000)
    logits = model.apply(variables, images_nhwc, train=False)

  Args:
    model_name: one of ``SUPPORTED`` (ResNet-18/34/50, their CIFAR-stem
      variants, ResNeXt-50 32x4d, Wide ResNet-50-2, AlexNet, VGG-11/16 with
      or without batch norm, ConvNeXt-T, EfficientNet-B0, DenseNet-121).
    state_dict: torchvision key -> torch tensor or numpy array (a
      ``'module.'`` prefix, as ``nn.DataParallel`` saves, is removed).
    num_classes: classes of the head; default: read from the classifier's
      weight (``fc.weight``, ``classifier.6.weight``, ``classifier.2.weight``,
      ... as the family names it).
    **fields: other model fields for ``models.create`` (e.g.
      ``downsample='blur'``, which adds no parameters; or smaller
      ``depths``/``dims``, ``stages``, ``block_config`` matching a smaller
      PyTorch network built the same way).

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` (``batch_stats`` for models with
    BatchNorm), float32 ``jax.Array``s in the model's ``param_dtype``.

  Raises:
    ValueError: unknown model; keys missing from or unexpected in the
      state dict (listed); a shape that does not match (naming the key, its
      PyTorch shape and the expected one).
    TypeError: ``state_dict`` is not a mapping, or a value is not an array.
  """
  if model_name not in SUPPORTED:
    raise ValueError(f"no PyTorch weight mapping for model {model_name!r}; supported: "
                     f"{', '.join(SUPPORTED)}")
  if not isinstance(state_dict, Mapping):
    raise TypeError(f"state_dict must be a mapping of names to tensors (model.state_dict() or "
                    f"torch.load(path)), got {type(state_dict).__name__}")
  state = dict(state_dict)
  if state and all(k.startswith("module.") for k in state):
    state = {k[len("module."):]: v for k, v in state.items()}
  family = _family(model_name)
  if num_classes is None:
    key = _classifier_key(model_name)
    if key not in state:
      raise ValueError(f"cannot infer num_classes: the state dict has no {key!r}; pass "
                       f"num_classes=...")
    num_classes = int(_to_numpy(state[key], key).shape[0])
  model = create(model_name, num_classes=num_classes, **fields)
  example = jnp.zeros((1, *spec(model_name).input_shape), spec(model_name).input_dtype)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), example, train=False))
  modules = _modules(abstract)
  if family == "vgg":
    torch_name = _vgg_names(list(modules)).get
  elif family == "efficientnet":
    torch_name = _efficientnet_names(list(modules)).get
  else:
    torch_name = {"resnet": _resnet_name, "alexnet": _alexnet_name, "convnext": _convnext_name,
                  "densenet": _densenet_name}[family]

  copier = _Copier(state)
  for path, collections in modules.items():
    prefix = torch_name(path)
    if prefix is None:
      raise ValueError(f"{model_name}: no torchvision name for module {'/'.join(path)}; "
                       f"fields {fields} change the architecture away from torchvision's")
    copier.copy_module(prefix, path, collections, family)
  copier.check(model_name)
  return dict(traverse_util.unflatten_dict(copier.flat))


def _head_list(keys: list[str], n: int = 10) -> str:
  return str(keys[:n])[:-1] + (", ...]" if len(keys) > n else "]")


def _same(x: np.ndarray) -> np.ndarray:
  return x


def _conv_kernel(w: np.ndarray) -> np.ndarray | None:
  """OIHW -> HWIO; an ``nn.Linear`` ``(out, in)`` on channels -> a 1x1 ``(1, 1, in, out)``."""
  if w.ndim == 2:
    return w.T[None, None]
  return np.transpose(w, (2, 3, 1, 0)) if w.ndim == 4 else None


def _layer_scale(w: np.ndarray) -> np.ndarray | None:
  """ConvNeXt's ``(C, 1, 1)`` layer scale -> ``(C,)``."""
  return w.reshape(w.shape[0]) if w.ndim >= 1 and w.size == w.shape[0] else None


def _dense_kernel(w: np.ndarray) -> np.ndarray | None:
  """``(out, in)`` -> ``(in, out)``."""
  return w.T if w.ndim == 2 else None


def _flattened_dense(chw: tuple[int, int, int]):
  """``(out, C*H*W)`` flattened CHW -> ``(H*W*C, out)`` flattened HWC."""
  c, h, w = chw

  def convert(weight: np.ndarray) -> np.ndarray | None:
    if weight.ndim != 2 or weight.shape[1] != c * h * w:
      return None
    out = weight.shape[0]
    return weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)

  return convert


def _torch_shape(shape: tuple[int, ...], convert) -> tuple[int, ...]:
  """The PyTorch shape that ``convert`` maps to ``shape``."""
  if convert is _conv_kernel:
    kh, kw, i, o = shape
    return (o, i, kh, kw)
  if convert is _layer_scale:
    return (shape[0], 1, 1)
  if len(shape) == 2:
    return (shape[1], shape[0])
  return tuple(shape)
