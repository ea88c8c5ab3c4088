"""The model registry: ``create(name, **fields)``, ``names()``, ``register(name)``, ``unregister``.

Entries are module classes or ``functools.partial`` variants of them (as the
Flax ImageNet example's ``ResNet50 = partial(ResNet, ...)``). ``create``
checks every keyword against the module's fields, so a misspelt option fails
at once with the list of valid ones instead of deep inside ``init``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

Factory = Callable[..., nn.Module]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A registry entry.

  Attributes:
    name: the registered name.
    factory: a module class or a ``functools.partial`` of one.
    input_shape: the smallest convenient input of one example, without the
      batch axis, e.g. ``(32, 32, 3)``: what tests and summaries use.
    input_dtype: dtype of that input (``'float32'``; ``'int32'`` for token ids).
  """

  name: str
  factory: Factory
  input_shape: tuple[int, ...]
  input_dtype: str = "float32"

  @property
  def module_class(self) -> type[nn.Module]:
    """The module class behind the factory."""
    factory = self.factory
    while isinstance(factory, functools.partial):
      factory = factory.func
    return factory

  def fields(self) -> tuple[str, ...]:
    """The fields ``create`` accepts for this entry (dataclass fields but ``parent``/``name``)."""
    return tuple(f.name for f in dataclasses.fields(self.module_class)
                 if f.init and f.name not in ("parent", "name"))


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, *, input_shape: tuple[int, ...] = (32, 32, 3), input_dtype: str = "float32"
) -> Callable[[Factory], Factory]:
  """Decorator adding a module class or partial to the registry under ``name``.

  Usage::

    @register('my_net', input_shape=(28, 28, 1))
    class MyNet(nn.Module): ...

    resnet18 = register('resnet18', input_shape=(32, 32, 3))(partial(ResNet, ...))

  Raises:
    ValueError: ``name`` is already registered (names are never replaced
      silently), or is not a non-empty string.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"a model name must be a non-empty string, got {name!r}")

  def decorator(factory: Factory) -> Factory:
    if name in _REGISTRY:
      raise ValueError(
          f"a model named {name!r} is already registered "
          f"({_REGISTRY[name].module_class.__name__}); choose another name")
    spec = ModelSpec(name, factory, tuple(input_shape), input_dtype)
    if not (isinstance(spec.module_class, type) and issubclass(spec.module_class, nn.Module)):
      raise TypeError(
          f"register({name!r}) expects a flax.linen.Module class or a "
          f"functools.partial of one, got {factory!r}")
    _REGISTRY[name] = spec
    return factory

  return decorator


def unregister(name: str) -> ModelSpec:
  """Removes ``name`` from the registry and returns its entry (for tests that register).

  Raises:
    ValueError: ``name`` is not registered (listing the names that are).
  """
  entry = spec(name)
  del _REGISTRY[name]
  return entry


def names() -> list[str]:
  """The registered model names, sorted."""
  return sorted(_REGISTRY)


def spec(name: str) -> ModelSpec:
  """The ``ModelSpec`` of ``name``; ``ValueError`` listing the valid names if unknown."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; registered models: {', '.join(names())}")
  return _REGISTRY[name]


def create(name: str, /, **kwargs: Any) -> nn.Module:
  """Builds the registered model ``name`` with the given fields.

  Example::

    >>> from cnnjax import models
    >>> model = models.create('resnet18_cifar', num_classes=10)
    >>> model.num_classes
    10

  Args:
    name: a name from ``names()``.
    **kwargs: module fields, e.g. ``num_classes=10``, ``dtype=jnp.bfloat16``,
      ``downsample='blur'``; they override the entry's defaults.

  Raises:
    ValueError: unknown name (the message lists the registered ones).
    TypeError: a keyword that is not a field of the model, naming it and the
      valid fields.
  """
  entry = spec(name)
  valid = entry.fields()
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    raise TypeError(
        f"{name} ({entry.module_class.__name__}) has no field(s) "
        f"{', '.join(map(repr, unknown))}; valid fields: {', '.join(valid)}")
  return entry.factory(**kwargs)
