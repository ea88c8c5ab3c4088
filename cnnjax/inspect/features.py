"""Activation maps of named layers, and feature vectors (embeddings) for k-NN and transfer.

Layers are named by their module path joined with ``'/'``: ``'conv1'`` (a
``ConvNormAct``: after its nonlinearity), ``'conv1/conv'`` (the bare
convolution), ``'stage2_block1'``, ``'global_pool'``. Their outputs are
captured with Flax's ``capture_intermediates``, filtered by path so only the
requested ones are kept. Values a model sows into ``'intermediates'`` are
named by the sow name: every cnnjax model sows ``'pre_logits'``, the input of
its ``head``. ``layer_names(model, variables, x)`` lists what can be asked for.

PyTorch does this with a forward hook (``register_forward_hook``); here
nothing is registered or removed, the capture is an argument of ``apply``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.inspect.filters import make_grid, minmax, save_image

PyTree = Any
CALL = "__call__"


def _flatten_intermediates(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
  """``{'a/b': value}`` for captured ``__call__`` outputs and sown values of an intermediates tree."""
  out: dict[str, Any] = {}
  for key, value in tree.items():
    if key == CALL:  # The root module's own output (the logits) has no path: left out.
      if prefix:
        out["/".join(prefix)] = value[0] if isinstance(value, tuple) else value
    elif isinstance(value, Mapping):
      out.update(_flatten_intermediates(value, prefix + (key,)))
    else:  # A sown value: a tuple of everything sown under that name.
      out["/".join(prefix + (key,))] = value[-1] if isinstance(value, tuple) else value
  return out


def _check_images(x: Any) -> jax.Array:
  if not hasattr(x, "shape"):
    raise TypeError(f"images must be an array (N, H, W, C), got {type(x).__name__}")
  if x.ndim != 4:
    raise ValueError(
        f"images must be (N, H, W, C), channels last (NHWC), got shape {tuple(x.shape)}"
        + ("; add a batch axis with x[None]" if x.ndim == 3 else ""))
  return jnp.asarray(x)


def _capture(model: nn.Module, variables: PyTree, x: jax.Array, wanted: frozenset[str] | None):
  """Runs ``model`` in evaluation mode, keeping the outputs of the modules in ``wanted`` (all if None)."""
  def keep(module: nn.Module, method_name: str) -> bool:
    return method_name == CALL and (wanted is None or "/".join(module.path) in wanted)

  _, state = model.apply(variables, x, train=False, capture_intermediates=keep,
                         mutable=["intermediates"])
  return _flatten_intermediates(state.get("intermediates", {}))


def layer_names(model: nn.Module, variables: PyTree, x: Any) -> list[str]:
  """Every name ``activations`` accepts for this model.

  Module paths come in the order their ``__call__`` returns (children before
  their parent: ``conv1/conv``, ``conv1/norm``, ``conv1``, ``conv2/conv``,
  ...), then the sown values (``pre_logits``), sorted. Nothing is computed: the
  model is traced with ``jax.eval_shape``.

  Args:
    model: a linen module called as ``model(x, train=False)``.
    variables: its variables (``{'params': ..., 'batch_stats': ...}``).
    x: one example batch ``(N, H, W, C)`` (shapes only matter).
  """
  x = _check_images(x)
  order: list[str] = []

  def record(module: nn.Module, method_name: str) -> bool:
    if method_name == CALL and module.path:
      order.append("/".join(module.path))
    return method_name == CALL

  def run(variables, x):
    _, state = model.apply(variables, x, train=False, capture_intermediates=record,
                           mutable=["intermediates"])
    return _flatten_intermediates(state.get("intermediates", {}))

  captured = jax.eval_shape(run, variables, x)
  modules = list(dict.fromkeys(order))
  return modules + sorted(set(captured) - set(modules))


def activations(model: nn.Module, variables: PyTree, x: Any,
                layers: Sequence[str] = ("pre_logits",)) -> dict[str, np.ndarray]:
  """Outputs of named layers for a batch of inputs, in evaluation mode (``train=False``).

  Example::

    >>> import jax, jax.numpy as jnp
    >>> from cnnjax import models
    >>> model = models.create('digits_cnn')
    >>> images = jnp.zeros((2, 8, 8, 1))
    >>> variables = model.init(jax.random.key(0), images, train=False)
    >>> maps = activations(model, variables, images[:1], layers=['conv1', 'conv3'])
    >>> maps['conv1'].shape
    (1, 8, 8, 32)

  Args:
    model: a linen module called as ``model(x, train=False)``.
    variables: its variables.
    x: ``(N, H, W, C)`` inputs, channels last.
    layers: module paths (``'conv1'``, ``'stage1_block0/conv1'``) or sown
      names (``'pre_logits'``).

  Returns:
    ``{name: np.ndarray}``: the layer's output, e.g. ``(N, H', W', C')`` for a
    convolution, ``(N, D)`` for ``pre_logits``.

  Raises:
    ValueError: a name that is neither a module path nor a sown value; the
      message lists the valid names.
  """
  if isinstance(layers, str):
    layers = [layers]
  x = _check_images(x)
  wanted = frozenset(layers)
  captured = _capture(model, variables, x, wanted)
  missing = [name for name in layers if name not in captured]
  if missing:
    raise ValueError(
        f"{type(model).__name__} has no layer(s) {missing}; valid names (module paths "
        f"joined by '/', and sown values): {', '.join(layer_names(model, variables, x))}")
  return {name: np.asarray(captured[name]) for name in layers}


def activation_grid(maps: Any, *, max_channels: int = 64, ncols: int | None = None) -> np.ndarray:
  """The picture ``plot_activations`` draws: one grey tile per channel, each min-max normalised.

  Args:
    maps: ``(H, W, C)``, or ``(1, H, W, C)`` (the first example is used).

  Returns:
    ``(H', W', 1)`` in ``[0, 1]``.
  """
  maps = np.asarray(maps, np.float32)
  if maps.ndim == 4:
    maps = maps[0]
  if maps.ndim != 3:
    raise ValueError(
        f"activation maps must be (H, W, C) or (N, H, W, C) (channels last), got shape "
        f"{maps.shape}; a (N, D) feature vector has no spatial map to draw")
  tiles = minmax(np.moveaxis(maps[..., :max_channels], -1, 0), axes=(1, 2))[..., None]
  return make_grid(tiles, ncols=ncols, pad_value=1.0)


def plot_activations(maps: Any, path: str | os.PathLike, *, max_channels: int = 64,
                     ncols: int | None = None, title: str | None = None) -> str:
  """Draws the channels of one activation map as a grid of grey tiles; writes a PNG.

  Each channel is min-max normalised on its own, so a channel that is zero
  everywhere (a dead ReLU filter) shows as uniform grey.

  Args:
    maps: ``(H, W, C)`` or ``(N, H, W, C)`` (first example), e.g. from ``activations``.
    path: the PNG to write.
    max_channels: draw at most this many channels.
    ncols: tiles per row.
    title: figure title.

  Returns:
    The path written.
  """
  shape = np.shape(maps)
  grid = activation_grid(maps, max_channels=max_channels, ncols=ncols)
  shown = min(shape[-1], max_channels)
  return save_image(grid, path, title=title or f"activations {shape}, {shown} channels",
                    scale=2.0)


def extract_features(model: nn.Module, variables: PyTree, images: Any, *,
                     layer: str = "pre_logits", batch_size: int = 256) -> np.ndarray:
  """Feature vectors (embeddings) of ``images`` at ``layer``, in evaluation mode.

  The forward pass is ``jax.jit``-compiled once and run over batches of
  ``batch_size``; the last batch is padded to the same size (so there is
  one compilation) and the padding dropped.

  Args:
    model: a linen module called as ``model(x, train=False)``.
    variables: its variables.
    images: ``(N, H, W, C)`` inputs, normalised as in training.
    layer: a name ``activations`` accepts; default ``'pre_logits'``, the
      input of the classifier head.
    batch_size: examples per forward pass.

  Returns:
    ``(N, D)`` float32: the layer's output flattened per example.
  """
  images = np.asarray(_check_images(images))
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  n = images.shape[0]
  if n == 0:
    raise ValueError("images is empty (N = 0)")
  wanted = frozenset([layer])

  @jax.jit
  def forward(variables, x):
    captured = _capture(model, variables, x, wanted)
    if layer not in captured:
      raise ValueError(
          f"{type(model).__name__} has no layer {layer!r}; valid names: "
          f"{', '.join(layer_names(model, variables, x))}")
    y = captured[layer]
    return y.reshape(y.shape[0], -1).astype(jnp.float32)

  size = min(batch_size, n)
  out = []
  for start in range(0, n, size):
    batch = images[start:start + size]
    real = batch.shape[0]
    if real < size:
      batch = np.concatenate([batch, np.zeros((size - real, *batch.shape[1:]), batch.dtype)])
    out.append(np.asarray(forward(variables, batch))[:real])
  return np.concatenate(out)
