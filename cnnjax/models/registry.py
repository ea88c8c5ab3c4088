"""The model registry: ``create(name, **fields)``, ``names()``, ``register(name)``, ``unregister``.

Entries are module classes or ``functools.partial`` variants of them (as the
Flax ImageNet example's ``ResNet50 = partial(ResNet, ...)``). ``create``
checks every keyword against the module's fields, so a misspelt option fails
at once with the list of valid ones instead of deep inside ``init``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
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

  def field_defaults(self) -> dict[str, Any]:
    """Each field's value when ``create`` is not given it (the partial's keyword, else the class default).

    A field without a default maps to ``dataclasses.MISSING``.
    """
    keywords: dict[str, Any] = {}
    factory = self.factory
    while isinstance(factory, functools.partial):
      keywords = {**factory.keywords, **keywords}
      factory = factory.func
    return {f.name: keywords.get(f.name, f.default if f.default is not dataclasses.MISSING
                                 else (f.default_factory()
                                       if f.default_factory is not dataclasses.MISSING
                                       else dataclasses.MISSING))
            for f in dataclasses.fields(self.module_class) if f.name in self.fields()}

  def field_types(self) -> dict[str, Any]:
    """Each field's annotation, resolved (``int``, ``str | None``, ``Sequence[int]``, ``Any``...)."""
    try:
      hints = typing.get_type_hints(self.module_class)
    except (NameError, TypeError):  # An annotation naming what the module cannot import.
      hints = {}
    return {name: hints.get(name, Any) for name in self.fields()}


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
    close = difflib.get_close_matches(name, names(), n=1) if isinstance(name, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown model {name!r}{hint} Registered models: {', '.join(names())}")
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
      ``num_outputs=k`` is accepted by every model with a ``num_classes``
      field: it sets ``num_classes=k``, giving a regression head of ``k``
      outputs (the same ``head``, read without a softmax).

  Raises:
    ValueError: unknown name (the message lists the registered ones).
    TypeError: a keyword that is not a field of the model, naming it and the
      valid fields.
  """
  entry = spec(name)
  valid = entry.fields()
  if "num_outputs" in kwargs and "num_outputs" not in valid and "num_classes" in valid:
    # A regression head is the classifier's head with k real outputs instead of
    # K logits: the same Dense, read without a softmax.
    if "num_classes" in kwargs:
      raise TypeError(
          f"{name}: give num_outputs (regression outputs) or num_classes (logits), not both; "
          f"got num_outputs={kwargs['num_outputs']!r} and num_classes={kwargs['num_classes']!r}")
    kwargs = dict(kwargs)
    kwargs["num_classes"] = kwargs.pop("num_outputs")
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    close = [c for u in unknown for c in difflib.get_close_matches(u, valid, n=1)]
    hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise TypeError(
        f"{name} ({entry.module_class.__name__}) has no field(s) "
        f"{', '.join(map(repr, unknown))}{hint}; valid fields: {', '.join(valid)}")
  return entry.factory(**kwargs)
