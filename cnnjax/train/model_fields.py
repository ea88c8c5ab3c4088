"""The fields of a registered model, as ``model.kwargs`` and the command line set them.

``model_fields(name)`` lists the fields ``cnnjax.models.create`` accepts for a
model (from the module's dataclass fields, with their resolved types and the
registry entry's defaults); ``check_model_kwargs`` checks a config's
``model.kwargs`` against them; ``split_model_overrides`` and
``apply_model_overrides`` take ``--config.model.kwargs.FIELD=VALUE``
arguments, which absl cannot parse before the config file names the model.
"""

from __future__ import annotations

import ast
import collections.abc
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections


# Fields the engine sets itself: from model.dtype, the data set and the step.
ENGINE_FIELDS = {
    "dtype": "set by model.dtype",
    "axis_name": "set by the training engine",
}


@dataclasses.dataclass(frozen=True)
class ModelField:
  """One field of a registered model, as ``model.kwargs`` takes it.

  Attributes:
    name: the field name, e.g. ``'width'``.
    annotation: its resolved type, e.g. ``int`` or ``str | None``.
    default: its value when not set (``dataclasses.MISSING`` if none).
    settable: whether the command line can set it (a number, a string, a bool,
      ``None`` or tuples of these); callables, classes and dtypes need a config file.
    note: why it is not settable, or ``''``.
  """

  name: str
  annotation: Any
  default: Any
  settable: bool
  note: str = ""

  @property
  def type_name(self) -> str:
    """The annotation as a user reads it: ``int``, ``str | None``, ``Sequence[int]``."""
    text = self.annotation.__name__ if isinstance(self.annotation, type) else str(self.annotation)
    text = re.sub(r"\b(?:collections\.abc|typing)\.", "", text)
    text = re.sub(r"Optional\[(.*)\]$", r"\1 | None", text)
    return text.replace("NoneType", "None")


def _literal_type(annotation: Any) -> bool:
  """Whether values of ``annotation`` can be written as a Python literal on a command line."""
  if annotation in (int, float, bool, str, type(None)):
    return True
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if origin in (typing.Union, types.UnionType):
    return all(_literal_type(a) for a in args)
  if origin in (tuple, collections.abc.Sequence, list):
    return all(_literal_type(a) for a in args if a is not Ellipsis)
  return False


def model_fields(name: str) -> dict[str, ModelField]:
  """The fields ``model.kwargs`` accepts for model ``name``, in declaration order.

  Raises:
    ValueError: ``name`` is not registered (the message lists the names).
  """
  from cnnjax import models  # noqa: PLC0415  (flax: only when a model is named)

  entry = models.spec(name)
  defaults, annotations = entry.field_defaults(), entry.field_types()
  out = {}
  for field in entry.fields():
    annotation = annotations[field]
    if field in ENGINE_FIELDS:
      settable, note = False, ENGINE_FIELDS[field]
    elif _literal_type(annotation):
      settable, note = True, ""
    else:
      settable, note = False, "a Python object: set it in a config file"
    out[field] = ModelField(field, annotation, defaults[field], settable, note)
  return out


def _conforms(value: Any, annotation: Any) -> bool:
  """Whether ``value`` has type ``annotation`` (an int passes for a float, a list for a tuple)."""
  if annotation is Any:
    return True
  if annotation is type(None) or annotation is None:
    return value is None
  if annotation is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if annotation is int:
    return isinstance(value, int) and not isinstance(value, bool)
  origin, args = typing.get_origin(annotation), typing.get_args(annotation)
  if origin in (typing.Union, types.UnionType):
    return any(_conforms(value, a) for a in args)
  if origin in (tuple, collections.abc.Sequence, list):
    if not isinstance(value, (tuple, list)):
      return False
    if origin is tuple and args and args[-1] is not Ellipsis:
      return len(value) == len(args) and all(map(_conforms, value, args))
    return all(_conforms(v, args[0]) for v in value) if args else True
  if isinstance(annotation, type):
    return isinstance(value, annotation)
  return True  # Callable[...] and other forms: create() and the module check them.


def _as_tuples(value: Any) -> Any:
  """Lists to tuples, recursively: module fields must be hashable."""
  if isinstance(value, (list, tuple)):
    return tuple(_as_tuples(v) for v in value)
  return value


def _unknown_field(model: str, key: str, fields: Mapping[str, ModelField]) -> ValueError:
  close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
  hint = f"; did you mean {close[0]!r}?" if close else "."
  settable = [f for f, info in fields.items() if info.settable]
  return ValueError(
      f"model {model!r} has no field {key!r} (config key model.kwargs.{key}){hint} "
      f"Its fields: {', '.join(settable)}")


def _type_error(model: str, field: ModelField, value: Any) -> TypeError:
  return TypeError(
      f"config model.kwargs.{field.name} must be {field.type_name} (a field of model "
      f"{model!r}), got {value!r} ({type(value).__name__})")


def check_model_kwargs(model: str, kwargs: Mapping[str, Any]) -> None:
  """Checks ``model.kwargs`` against the fields of model ``model``.

  Does nothing when ``model`` is not registered: the engine reports that with
  the list of names.

  Raises:
    ValueError: a key that is not a field of the model (naming the nearest one),
      or a field the engine sets itself (``dtype``, ``axis_name``).
    TypeError: a value of the wrong type, naming the key, the type and the value.
  """
  if not kwargs:
    return
  try:
    fields = model_fields(model)
  except ValueError:
    return
  for key, value in kwargs.items():
    if key == "num_outputs" and key not in fields and "num_classes" in fields:
      # models.create reads it as num_classes: a regression head of that many outputs.
      key = "num_classes"
    if key not in fields:
      raise _unknown_field(model, key, fields)
    field = fields[key]
    if key in ENGINE_FIELDS:
      raise ValueError(f"config model.kwargs.{key} is {field.note}; remove it from model.kwargs")
    if field.settable and not _conforms(value, field.annotation):
      raise _type_error(model, field, value)


def parse_model_field(model: str, key: str, text: str) -> Any:
  """The value of ``--config.model.kwargs.KEY=TEXT`` for model ``model``, type-checked.

  ``TEXT`` is read as a Python literal (``2``, ``0.5``, ``(2, 2, 2, 2)``,
  ``None``, ``True``; ``true``/``false`` too); a string needs no quotes
  (``downsample=blur``).

  Raises:
    ValueError: no such field (naming the nearest), or one the command line
      cannot set (why, and where to set it).
    TypeError: a value of the wrong type.
  """
  fields = model_fields(model)
  if key not in fields:
    raise _unknown_field(model, key, fields)
  field = fields[key]
  if not field.settable:
    raise ValueError(
        f"model.kwargs.{key} of model {model!r} ({field.type_name}) cannot be set from the "
        f"command line: {field.note}")
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text  # A bare word: 'SAME', 'blur'.
  if text.lower() in ("true", "false") and _conforms(True, field.annotation):
    value = text.lower() == "true"
  if text.lower() == "none":
    value = None
  if not _conforms(value, field.annotation) and _conforms(text, field.annotation):
    value = text  # '7' for a str field stays the string '7'.
  value = _as_tuples(value)
  if not _conforms(value, field.annotation):
    raise _type_error(model, field, value)
  if field.annotation is float and isinstance(value, int):
    value = float(value)  # config.json records dropout_rate=0 as 0.0, as the field is.
  return value


MODEL_OVERRIDE = re.compile(r"^--config\.model\.kwargs\.([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.S)


def split_model_overrides(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
  """Separates ``--config.model.kwargs.FIELD=VALUE`` arguments from the others.

  They name fields of a model chosen by the config, which absl cannot know
  before the config file is read; ``apply_model_overrides`` sets them after.

  Returns:
    ``(the other arguments in order, {field: value text})``.
  """
  rest, overrides = [], {}
  for arg in argv:
    match = MODEL_OVERRIDE.match(arg)
    if match:
      overrides[match.group(1)] = match.group(2)
    else:
      rest.append(arg)
  return rest, overrides


def apply_model_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, str]) -> None:
  """Sets ``config.model.kwargs[field]`` from command-line text, type-checked (even if locked)."""
  values = {key: parse_model_field(config.model.name, key, text)
            for key, text in overrides.items()}
  with config.unlocked():
    for key, value in values.items():
      config.model.kwargs[key] = value
