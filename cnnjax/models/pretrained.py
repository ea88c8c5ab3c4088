"""A model and its weights from a local file: ``pretrained(name, path, **fields)``.

Three kinds of file, told apart by the path:

* ``*.pth`` / ``*.pt``: a torchvision ``state_dict`` saved with
  ``torch.save``, read with ``torch.load(weights_only=True)`` (PyTorch is
  needed: ``pip install cnnjax[torch]``) and converted by
  ``load_torch_state_dict``;
* ``*.safetensors``: read with ``safetensors.numpy`` (no PyTorch); either a
  torchvision ``state_dict`` (keys such as ``features.0.0.weight``) or
  cnnjax variables flattened with ``/`` (``params/stem/conv/kernel``,
  ``batch_stats/stem/norm/mean``), as ``save_safetensors`` writes them;
* a directory: a cnnjax run directory (``config.json`` and
  ``checkpoints/``, as ``experiments/train.py`` writes it), or an orbax
  checkpoint (a ``checkpoints/`` directory, one ``<step>/`` of it, or a
  ``StandardCheckpointer`` save of ``{'params': ..., 'batch_stats': ...}``).

Nothing is downloaded. torchvision's ImageNet weights are the files its
``weights`` enums name (e.g. ``ConvNeXt_Tiny_Weights.IMAGENET1K_V1.url``);
fetch them once with any HTTP client, or take them from PyTorch's cache
(``~/.cache/torch/hub/checkpoints/``) on a machine that has used them.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from cnnjax.layers import initializers
from cnnjax.models.registry import create, spec
from cnnjax.models.torch_import import SUPPORTED, _classifier_key, load_torch_state_dict

PyTree = Any

_TORCH_SUFFIXES = (".pth", ".pt")
_COLLECTIONS = ("params", "batch_stats")


def save_safetensors(path: str | os.PathLike, variables: Mapping[str, Any]) -> None:
  """Writes cnnjax variables to a ``.safetensors`` file, keys ``'params/stem/conv/kernel'``.

  ``pretrained(name, path)`` reads it back. Only ``params`` and
  ``batch_stats`` are written (as numpy arrays; bfloat16 as float32).
  """
  from safetensors.numpy import save_file  # noqa: PLC0415

  flat = {}
  for collection in _COLLECTIONS:
    for key, value in traverse_util.flatten_dict(dict(variables.get(collection, {}))).items():
      array = np.asarray(jnp.asarray(value, jnp.float32) if value.dtype == jnp.bfloat16 else value)
      flat["/".join((collection, *key))] = np.ascontiguousarray(array)
  save_file(flat, os.fspath(path))


def _read_torch(path: str) -> dict[str, Any]:
  try:
    import torch  # noqa: PLC0415
  except ImportError as e:
    raise ImportError(
        f"reading {path!r} needs PyTorch (torch.load); install it with pip install "
        f"cnnjax[torch], or convert the file to .safetensors where PyTorch is installed") from e
  state = torch.load(path, map_location="cpu", weights_only=True)
  if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"],
                                                                          Mapping):
    state = state["state_dict"]
  if not isinstance(state, Mapping):
    raise TypeError(f"{path!r} holds a {type(state).__name__}, not a state_dict (a mapping of "
                    f"names to tensors); save model.state_dict(), not the model")
  return dict(state)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # noqa: PLC0415

  return load_file(path)


def _restore_run(workdir: str) -> tuple[PyTree, str]:
  """``(variables, model name)`` of the newest checkpoint of a cnnjax run directory."""
  from cnnjax.inspect.runs import load_run  # noqa: PLC0415

  run = load_run(workdir)
  return run.variables, run.config.model.name


def _checkpoint_item(path: str) -> str:
  """The orbax item directory holding the arrays under ``path`` (newest step if several)."""
  steps = sorted((int(d) for d in os.listdir(path)
                  if d.isdigit() and os.path.isdir(os.path.join(path, d))), reverse=True)
  if steps:
    path = os.path.join(path, str(steps[0]))
  if os.path.isdir(os.path.join(path, "state")):
    path = os.path.join(path, "state")
  return path


def _restore_orbax(path: str) -> PyTree:
  import orbax.checkpoint as ocp  # noqa: PLC0415

  item = _checkpoint_item(path)
  try:
    restored = ocp.StandardCheckpointer().restore(item)
  except Exception as e:  # orbax raises several types for "not a checkpoint".
    raise ValueError(
        f"{path!r} is neither a cnnjax run directory (no config.json) nor an orbax checkpoint "
        f"readable at {item!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    ) from e
  if not isinstance(restored, Mapping) or "params" not in restored:
    raise ValueError(f"the orbax checkpoint at {item!r} holds no 'params' (found "
                     f"{sorted(restored) if isinstance(restored, Mapping) else type(restored)})")
  return {k: restored[k] for k in _COLLECTIONS if k in restored and restored[k]}


def _head_classes(variables: PyTree) -> int:
  return int(np.shape(variables["params"]["head"]["kernel"])[-1])


def _shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
  return {"/".join(k): tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(
      {c: dict(tree[c]) for c in _COLLECTIONS if c in tree}).items()}


def _check_fits(name: str, variables: PyTree, abstract: PyTree, source: str) -> None:
  """Raises ``ValueError`` naming the first arrays where ``variables`` and the model differ."""
  got, want = _shapes(variables), _shapes(abstract)
  if got == want:
    return
  differences = []
  # Parameters first: a differing kernel says more than the statistics that follow it.
  for key in sorted(set(got) | set(want), key=lambda k: (not k.startswith("params/"), k)):
    if key not in got:
      differences.append(f"the model has {key} {want[key]}, the file has no such array")
    elif key not in want:
      differences.append(f"the file has {key} {got[key]}, the model has no such array")
    elif got[key] != want[key]:
      differences.append(f"{key} is {got[key]} in the file, {want[key]} in the model")
    if len(differences) == 3:
      break
  raise ValueError(
      f"{source} does not hold a {name} with these fields ({len(got)} arrays in the file, "
      f"{len(want)} in the model); first differing arrays: " + "; ".join(differences))


def _new_head(model: nn.Module, features: int, seed: int) -> dict[str, jax.Array]:
  """A freshly initialised ``head`` Dense, as the model's ``classifier_head`` builds it."""
  dense = nn.Dense(model.num_classes, dtype=model.dtype, param_dtype=model.param_dtype,
                   kernel_init=initializers.lecun_normal())
  return dense.init(jax.random.key(seed), jnp.zeros((1, features), jnp.float32))["params"]


def pretrained(name: str, path: str | os.PathLike, /, *, seed: int = 0,
               **fields: Any) -> tuple[nn.Module, dict[str, Any]]:
  """Builds the registered model ``name`` with the weights stored at ``path``.

  Example::

    model, variables = models.pretrained('convnext_tiny', 'convnext_tiny-983f1562.pth')
    logits = model.apply(variables, images_nhwc, train=False)   # (N, 1000)
    model, variables = models.pretrained('resnet50', 'resnet50.safetensors', num_classes=10)

  Args:
    name: a registered model name (``models.names()``).
    path: a ``.pth``/``.pt`` torchvision state dict, a ``.safetensors``
      file (torchvision keys or cnnjax ``params/...`` keys), or a cnnjax run
      directory / orbax checkpoint directory.
    seed: seeds the new head when ``num_classes`` replaces the file's.
    **fields: model fields for ``models.create``. ``num_classes`` different
      from the file's head keeps every other weight and replaces ``head``
      with a freshly initialised one of that size (a ``UserWarning`` says
      so), as for transfer learning; default: the file's.

  Returns:
    ``(model, variables)``: ``model.apply(variables, x, train=False)``
    maps ``(N, H, W, C)`` images to ``(N, num_classes)`` logits;
    ``variables`` holds ``params`` and, for models with BatchNorm,
    ``batch_stats``.

  Raises:
    ValueError: an unknown model; a path that does not exist or is of no
      known kind; a file of another architecture (naming the first arrays
      that differ and their shapes); a run trained as another model.
    ImportError: a ``.pth`` file without PyTorch installed.
  """
  entry = spec(name)
  source = os.fspath(path)
  if not os.path.exists(source):
    raise ValueError(f"no such file or directory: {source!r}")
  requested = fields.pop("num_classes", None)
  is_torch_dict = False
  if os.path.isdir(source):
    if os.path.isfile(os.path.join(source, "config.json")):
      variables, trained = _restore_run(source)
      if trained != name:
        raise ValueError(f"{source!r} is a run of {trained!r}, not of {name!r}; pass "
                         f"name={trained!r}")
    else:
      variables = _restore_orbax(source)
  elif source.endswith(".safetensors"):
    state = _read_safetensors(source)
    if any(k.startswith("params/") for k in state):
      variables = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in state.items()})
    else:
      variables, is_torch_dict = state, True
  elif source.endswith(_TORCH_SUFFIXES):
    variables, is_torch_dict = _read_torch(source), True
  else:
    raise ValueError(f"{source!r}: expected a .pth/.pt or .safetensors file, or a run / orbax "
                     f"checkpoint directory")

  if is_torch_dict:
    if name not in SUPPORTED:
      raise ValueError(f"{source!r} is a PyTorch state dict, and {name!r} has no torchvision "
                       f"weight mapping; supported: {', '.join(SUPPORTED)}")
    key = _classifier_key(name)
    state = variables
    if key not in state:
      first = ", ".join(f"{k!r} {tuple(np.shape(state[k]))}" for k in sorted(state)[:3])
      raise ValueError(f"{source!r} does not hold a torchvision {name}: the model has "
                       f"{key!r}, the file has no such array; first arrays of its {len(state)}: "
                       f"{first}")
    file_classes = int(np.shape(state[key])[0])
    variables = load_torch_state_dict(name, state, num_classes=file_classes, **fields)
  else:
    if "head" not in variables.get("params", {}):
      raise ValueError(f"{source!r} holds no params/head: not the variables of a cnnjax model")
    file_classes = _head_classes(variables)

  model = create(name, num_classes=file_classes, **fields)
  example = jnp.zeros((1, *entry.input_shape), entry.input_dtype)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), example, train=False))
  if not is_torch_dict:
    _check_fits(name, variables, abstract, repr(source))
    variables = jax.tree.map(lambda v, a: jnp.asarray(v, a.dtype),
                             {c: variables[c] for c in _COLLECTIONS if c in abstract},
                             {c: abstract[c] for c in _COLLECTIONS if c in abstract})
  if requested is not None and requested != file_classes:
    model = create(name, num_classes=requested, **fields)
    features = abstract["params"]["head"]["kernel"].shape[0]
    params = dict(variables["params"])
    params["head"] = _new_head(model, features, seed)
    variables = {**variables, "params": params}
    warnings.warn(f"{source!r} has a {file_classes}-class head; {name} gets a freshly "
                  f"initialised {requested}-class head (params/head), the other weights are "
                  f"the file's", UserWarning, stacklevel=2)
  return model, dict(variables)
