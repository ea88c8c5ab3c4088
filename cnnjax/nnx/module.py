"""``FromLinen``: a cnnjax linen module as a Flax NNX module, and weights both ways.

Every cnnjax computation is written once, as a linen module over
``cnnjax.ops`` with its checks in ``cnnjax.ops.validation``. ``FromLinen``
gives that module NNX's state and modes instead of re-implementing it:

* its variables become NNX variables on a tree of submodules that mirrors
  the linen names (``model.stem.conv.kernel`` is the linen
  ``params['stem']['conv']['kernel']``): ``params`` as ``nnx.Param``,
  ``batch_stats`` as ``nnx.BatchStat`` (float32 whatever ``dtype`` is);
* its mode is ``use_running_average``, as ``nnx.BatchNorm``'s: switched by
  ``model.train()`` / ``model.eval()``, by ``nnx.view`` or per call, and
  passed to the linen module as its ``train`` argument; a train-mode call
  writes the updated running statistics back into the ``nnx.BatchStat``s;
* dropout draws its key from the ``rngs`` given at construction (or a key
  passed to the call).

Unlike ``flax.nnx.bridge.ToNNX``, no ``train=`` is needed on each call and the
state is NNX-shaped (``nnx.state(model, nnx.BatchStat)``), so NNX optimizers,
``nnx.jit`` and ``nnx.split``/``merge`` see ordinary NNX modules.
``to_linen`` and ``from_linen`` move weights between the two forms.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax import nnx

Array = jax.Array

#: Linen collections and the NNX variable types that hold them.
COLLECTIONS: dict[str, type[nnx.Variable]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}


class Scope(nnx.Module):
  """A node of the variable tree: one linen submodule's variables and children, as attributes."""


def _takes_train(module: nn.Module) -> bool:
  try:
    return "train" in inspect.signature(type(module).__call__).parameters
  except (TypeError, ValueError):
    return False


def _key(rngs: nnx.Rngs | Array | None, stream: str) -> Array | None:
  if rngs is None:
    return None
  if isinstance(rngs, nnx.Rngs):
    return getattr(rngs, stream)()
  return rngs


class FromLinen(nnx.Module):
  """A cnnjax linen module with NNX state and NNX's train/eval modes.

  Example::

    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from cnnjax import blocks, layers
    >>> from cnnjax.nnx import FromLinen
    >>> block = blocks.BasicBlock(8, conv=layers.Conv, norm=layers.BatchNorm)
    >>> model = FromLinen(block, jax.ShapeDtypeStruct((1, 8, 8, 8), jnp.float32), rngs=nnx.Rngs(0))
    >>> model.conv1.kernel.shape
    (3, 3, 8, 8)
    >>> model.eval()  # running statistics, as nnx.BatchNorm

  Args:
    module: the linen module (unbound).
    sample: an input (or ``jax.ShapeDtypeStruct``) of the shape the module
      will see, batch axis included; only its shape and dtype are used
      (``lazy_init``: nothing is computed but the initialisers). ``None`` for
      a module without variables.
    *args: further inputs of ``module.__call__`` for initialisation.
    rngs: ``params`` (or ``default``) stream for the initialisers; kept for
      dropout when ``keep_rngs``.
    use_running_average: the initial mode (``False``: training, as NNX's
      modules start).
    keep_rngs: keep ``rngs`` to draw dropout keys in training mode.
    variables: linen variables to start from (a checkpoint's, torch
      weights through ``models.load_torch_state_dict``, another ``init``'s),
      every collection the module creates, in its names and shapes. The
      initialisers are then only traced (``jax.eval_shape``), never run or
      compiled, and ``rngs`` is needed only for dropout.

  Raises:
    ValueError: ``variables`` miss a collection, a name or a shape of the
      module's (naming the path), or hold one it lacks.
  """

  def __init__(self, module: nn.Module, sample: Any = None, *args: Any, rngs: nnx.Rngs | None = None,
               use_running_average: bool = False, keep_rngs: bool = False,
               variables: Mapping[str, Any] | None = None, **kwargs: Any):
    if not isinstance(module, nn.Module):
      raise TypeError(f"FromLinen wraps a flax.linen.Module, got {type(module).__name__}")
    self.module = module
    self.takes_train = _takes_train(module)
    self.use_running_average = use_running_average
    self.rngs = rngs if keep_rngs else None
    if sample is None:
      return
    if rngs is None and variables is None:
      raise TypeError(f"{type(self).__name__}: rngs=nnx.Rngs(...) is needed to initialise the parameters")
    if self.takes_train:
      kwargs = {"train": False, **kwargs}
    if variables is None:
      created = module.lazy_init({"params": rngs.params()}, sample, *args, **kwargs)
    else:  # Shapes only: the variables given replace the initialisers' values below.
      created = jax.eval_shape(
          lambda sample, args: module.init({"params": jax.random.key(0)}, sample, *args, **kwargs),
          sample, args)
    unknown = sorted(set(created) - set(COLLECTIONS))
    if unknown:
      raise ValueError(
          f"{type(module).__name__} creates variable collections {unknown}; FromLinen maps "
          f"only {sorted(COLLECTIONS)}")
    for collection, tree in created.items():
      _build(self, tree, COLLECTIONS[collection], ())
    if variables is not None:
      missing = sorted(set(created) - set(variables))
      if missing:
        raise ValueError(f"FromLinen: variables lack the collections {missing} that "
                         f"{type(module).__name__} creates; got {sorted(variables)}")
      from_linen(self, variables)

  def set_view(self, use_running_average: bool | None = None):
    """Used by ``nnx.view``: sets the mode."""
    if use_running_average is not None:
      self.use_running_average = use_running_average

  def _apply(self, x: Any, *args: Any, use_running_average: bool | None, rngs: Any,
             collect: tuple[str, ...], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    running = self.use_running_average if use_running_average is None else use_running_average
    train = not running
    variables = to_linen(self)
    if self.takes_train:
      kwargs = {"train": train, **kwargs}
    mutable = list(collect)
    if train and "batch_stats" in variables:
      mutable.append("batch_stats")
    key = _key(rngs if rngs is not None else self.rngs, "dropout") if train else None
    out = self.module.apply(variables, x, *args, mutable=mutable or False,
                            rngs=None if key is None else {"dropout": key}, **kwargs)
    if not mutable:
      return out, {}
    y, updates = out
    if "batch_stats" in updates:
      from_linen(self, {"batch_stats": updates["batch_stats"]})
    return y, dict(updates)

  def __call__(self, x: Any, *args: Any, use_running_average: bool | None = None,
               rngs: nnx.Rngs | Array | None = None, **kwargs: Any) -> Any:
    """Applies the module.

    Args:
      x: the linen module's first input; further positional and keyword
        arguments are passed on to it as well (without ``train``).
      use_running_average: the mode for this call (default: the module's,
        set by ``train()``/``eval()``).
      rngs: a key or ``nnx.Rngs`` for dropout in training mode (default:
        the ``rngs`` kept at construction).
    """
    return self._apply(x, *args, use_running_average=use_running_average, rngs=rngs,
                       collect=(), **kwargs)[0]

  def intermediates(self, x: Any, *args: Any, use_running_average: bool | None = None,
                    rngs: nnx.Rngs | Array | None = None, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The output and the linen ``'intermediates'`` the module sows (``pre_logits``, ...)."""
    y, updates = self._apply(x, *args, use_running_average=use_running_average, rngs=rngs,
                             collect=("intermediates",), **kwargs)
    return y, updates.get("intermediates", {})


def _build(node: nnx.Module, tree: Mapping[str, Any], kind: type[nnx.Variable],
           path: tuple[str, ...]) -> None:
  for name, value in tree.items():
    if isinstance(value, Mapping):
      child = getattr(node, name, None)
      if child is None:
        child = Scope()
        setattr(node, name, child)
      elif not isinstance(child, Scope):
        raise ValueError(f"FromLinen: linen name {'/'.join((*path, name))!r} clashes with an attribute")
      _build(child, value, kind, (*path, name))
    else:
      if hasattr(node, name):
        raise ValueError(f"FromLinen: linen variable {'/'.join((*path, name))!r} clashes with an attribute")
      setattr(node, name, kind(nn.meta.unbox(value)))


def _walk(node: nnx.Module, path: tuple[str, ...]):
  for name, value in sorted(vars(node).items()):
    if isinstance(value, nnx.Variable) and type(value) in COLLECTIONS.values():
      yield (*path, name), value
    elif isinstance(value, Scope):
      yield from _walk(value, (*path, name))


def _check_model(model: Any, what: str) -> None:
  if not isinstance(model, FromLinen):
    raise TypeError(f"{what} expects a cnnjax.nnx module (a FromLinen), got {type(model).__name__}")


def to_linen(model: FromLinen) -> dict[str, Any]:
  """The linen variables of ``model``: ``{'params': ..., 'batch_stats': ...}`` (collections it has).

  What ``cnnjax.models.create(...).init`` gives and ``apply`` takes, so the
  linen module computes the same function with them.
  """
  _check_model(model, "to_linen")
  names = {kind: collection for collection, kind in COLLECTIONS.items()}
  variables: dict[str, Any] = {}
  for path, var in _walk(model, ()):
    tree = variables.setdefault(names[type(var)], {})
    for name in path[:-1]:
      tree = tree.setdefault(name, {})
    tree[path[-1]] = var.get_value()
  return variables


def from_linen(model: FromLinen, variables: Mapping[str, Any]) -> FromLinen:
  """Copies linen variables into ``model`` in place (and returns it).

  Args:
    model: a ``cnnjax.nnx`` module.
    variables: ``{'params': ..., 'batch_stats': ...}`` as a linen ``init``,
      a cnnjax checkpoint's state or ``models.load_torch_state_dict`` give
      them; every collection given must match the model's variables in
      names and shapes (a collection left out is left as it is).

  Raises:
    ValueError: a collection NNX does not hold, a missing or extra name, or
      a shape that differs, naming the path.
  """
  _check_model(model, "from_linen")
  names = {kind: collection for collection, kind in COLLECTIONS.items()}
  variables = {k: v for k, v in dict(variables).items()}
  unknown = sorted(set(variables) - set(COLLECTIONS))
  if unknown:
    raise ValueError(f"from_linen: collections {unknown} have no NNX counterpart; expected {sorted(COLLECTIONS)}")
  flat = {}
  for collection, tree in variables.items():
    for path, value in _flatten(tree, ()):
      flat[(collection, *path)] = value
  seen = set()
  for path, var in _walk(model, ()):
    collection = names[type(var)]
    if collection not in variables:
      continue
    full = (collection, *path)
    if full not in flat:
      raise ValueError(f"from_linen: {'/'.join(full)} is missing from the variables given")
    value = nn.meta.unbox(flat[full])
    if tuple(np.shape(value)) != tuple(var.get_value().shape):
      raise ValueError(
          f"from_linen: {'/'.join(full)} has shape {tuple(np.shape(value))}, the model "
          f"needs {tuple(var.get_value().shape)}")
    var.set_value(jax.numpy.asarray(value, var.get_value().dtype))
    seen.add(full)
  extra = sorted('/'.join(p) for p in set(flat) - seen)
  if extra:
    raise ValueError(f"from_linen: the model has no variable(s) {extra[:5]}{' ...' if len(extra) > 5 else ''}")
  return model


def _flatten(tree: Any, path: tuple[str, ...]):
  if isinstance(tree, Mapping):
    for name, value in tree.items():
      yield from _flatten(value, (*path, name))
  else:
    yield path, tree
