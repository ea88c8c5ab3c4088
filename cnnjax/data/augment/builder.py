"""Building augmentations: combinators, the registry and the spec string, class maps.

``build('random_crop(padding=2), horizontal_flip')`` turns a spec — comma
separated calls of the registered names (``REGISTRY``, or the short
``ALIASES``) with Python literals as keyword arguments — into one
``Compose``; ``Compose``, ``RandomApply`` and ``RandomChoice`` combine
augmentations by hand; ``batch_augment`` maps one over a batch;
``with_segmentation`` applies a built augmentation to an image and its class
map, moving the map with the same geometry.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.data.augment import ops_image as ops
from cnnjax.data.augment.ops_image import Array, Augmentation, _bernoulli, _check_batch, _check_image


# --- combinators --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Compose:
  """Applies ``fns`` in order, each with its own key split from the one given."""

  fns: Sequence[Augmentation]

  def __post_init__(self):
    object.__setattr__(self, "fns", tuple(self.fns))  # hashable, so jax.jit can take it

  def __call__(self, key: Array, image: Array) -> Array:
    if not self.fns:
      return image
    for fn, k in zip(self.fns, jax.random.split(key, len(self.fns))):
      image = fn(k, image)
    return image


@dataclasses.dataclass(frozen=True)
class RandomApply:
  """Applies ``fn`` with probability ``p`` (``lax.cond``; a select under vmap)."""

  fn: Augmentation
  p: float = 0.5

  def __call__(self, key: Array, image: Array) -> Array:
    key_apply, key_fn = jax.random.split(key)
    return lax.cond(_bernoulli(key_apply, self.p),
                    lambda: self.fn(key_fn, image).astype(image.dtype), lambda: image)


@dataclasses.dataclass(frozen=True)
class RandomChoice:
  """Applies one of ``fns``, drawn with probabilities ``weights`` (``lax.switch``).

  All ``fns`` must return the same shape and dtype.
  """

  fns: Sequence[Augmentation]
  weights: Sequence[float] | None = None

  def __post_init__(self):
    object.__setattr__(self, "fns", tuple(self.fns))  # hashable, so jax.jit can take it
    if self.weights is not None:
      object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
    if not self.fns:
      raise ValueError("RandomChoice needs at least one function")
    if self.weights is not None and (
        len(self.weights) != len(self.fns) or min(self.weights) < 0 or sum(self.weights) <= 0):
      raise ValueError(
          f"weights must be {len(self.fns)} non-negative numbers with a positive sum, got "
          f"{self.weights}")

  def __call__(self, key: Array, image: Array) -> Array:
    key_choice, key_fn = jax.random.split(key)
    weights = jnp.ones(len(self.fns)) if self.weights is None else jnp.asarray(self.weights, jnp.float32)
    index = jax.random.categorical(key_choice, jnp.log(weights))
    branches = [functools.partial(lambda f, k, x: f(k, x).astype(x.dtype), fn) for fn in self.fns]
    return lax.switch(index, branches, key_fn, image)


def batch_augment(fn: Augmentation) -> Callable[[Array, Array], Array]:
  """``fn`` on a batch ``(N, H, W, C)``: one key per example, ``jax.vmap``-ed."""

  def apply(key: Array, images: Array) -> Array:
    _check_batch(images)
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(fn)(keys, images)

  return apply


# --- config builder -----------------------------------------------------------------

REGISTRY: dict[str, Callable[..., Array]] = {
    "random_crop": ops.random_crop,
    "horizontal_flip": ops.horizontal_flip,
    "vertical_flip": ops.vertical_flip,
    "rotate": ops.rotate,
    "random_resized_crop": ops.random_resized_crop,
    "gaussian_blur": ops.gaussian_blur,
    "random_erasing": ops.random_erasing,
    "color_jitter": ops.color_jitter,
    "salt_and_pepper": ops.salt_and_pepper,
    "identity": ops.identity,
}
ALIASES = {"crop": "random_crop", "flip": "horizontal_flip", "hflip": "horizontal_flip",
           "vflip": "vertical_flip", "blur": "gaussian_blur", "erase": "random_erasing",
           "jitter": "color_jitter"}


def _make(name: str, kwargs: Mapping[str, Any]) -> Augmentation:
  name = ALIASES.get(name, name)
  if name not in REGISTRY:
    raise ValueError(
        f"unknown augmentation {name!r}; expected one of {sorted(REGISTRY)} or aliases "
        f"{sorted(ALIASES)}")
  fn = REGISTRY[name]
  params = inspect.signature(fn).parameters
  unknown = [k for k in kwargs if k not in params or k in ("key", "image")]
  if unknown:
    allowed = [k for k in params if k not in ("key", "image")]
    raise ValueError(f"augmentation {name!r} got unknown arguments {unknown}; expected some of {allowed}")
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  return functools.partial(fn, **kwargs) if kwargs else fn


def _parse(text: str) -> list[Augmentation]:
  try:
    tree = ast.parse(f"({text},)", mode="eval").body
  except SyntaxError as e:
    raise ValueError(
        f"cannot parse augmentation spec {text!r}; expected comma-separated calls like "
        f"'random_crop(padding=2), horizontal_flip'") from e
  out = []
  for node in tree.elts:
    if isinstance(node, ast.Name):
      out.append(_make(node.id, {}))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args:
      try:
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
      except ValueError as e:
        raise ValueError(f"augmentation arguments must be Python literals in {text!r}") from e
      out.append(_make(node.func.id, kwargs))
    else:
      raise ValueError(
          f"cannot read {ast.unparse(node)!r} in augmentation spec {text!r}; expected a name or "
          f"a call with keyword arguments, e.g. rotate(degrees=10)")
  return out


def build(spec: str | None) -> Augmentation:
  """Builds one ``f(key, image)`` from a spec string.

  Example::

    augment.build('random_crop(padding=4, pad_mode="reflect"), horizontal_flip, rotate(degrees=10)')

  Args:
    spec: comma-separated names of ``REGISTRY`` (or ``ALIASES``), each bare
      or called with keyword arguments that are Python literals; ``None`` or
      ``''`` for the identity.

  Returns:
    A ``Compose`` of the augmentations, in order.

  Raises:
    ValueError: anything but a string, an unknown name or argument, or text
      that is not calls with keyword literals.
  """
  if spec is None:
    return Compose(())
  if not isinstance(spec, str):
    raise ValueError(
        f"an augmentation spec is one string of comma-separated calls, e.g. "
        f"'random_crop(padding=2), horizontal_flip'; got {type(spec).__name__} {spec!r}")
  return Compose(tuple(_parse(spec))) if spec.strip() else Compose(())



# --- dense labels ------------------------------------------------------------------

#: Augmentations that move pixels: with a class map, the same geometry is applied to it.
GEOMETRIC = frozenset({"random_crop", "horizontal_flip", "vertical_flip", "rotate",
                       "random_resized_crop"})
#: Arguments that make a geometric augmentation exact on a class map: nearest neighbour.
_NEAREST = {"rotate": {"order": 0}, "random_resized_crop": {"method": "nearest"}}


def _geometry_of(fn: Augmentation) -> tuple[str | None, Callable[..., Array], dict[str, Any]]:
  """``(registry name or None, function, bound keywords)`` of a built augmentation."""
  base, keywords = fn, {}
  if isinstance(fn, functools.partial):
    base, keywords = fn.func, dict(fn.keywords)
  names = [name for name, f in REGISTRY.items() if f is base]
  return (names[0] if names else None), base, keywords


def _paired(fn: Augmentation, key: Array, image: Array, segmentation: Array, fill: int):
  """One augmentation on ``(image, class map)``: moved alike, or only the image changed."""
  if isinstance(fn, Compose):
    if not fn.fns:
      return image, segmentation
    for f, k in zip(fn.fns, jax.random.split(key, len(fn.fns))):
      image, segmentation = _paired(f, k, image, segmentation, fill)
    return image, segmentation
  if isinstance(fn, RandomApply):
    key_apply, key_fn = jax.random.split(key)
    applied = lambda: tuple(  # noqa: E731
        a.astype(b.dtype) for a, b in zip(_paired(fn.fn, key_fn, image, segmentation, fill),
                                          (image, segmentation)))
    return lax.cond(_bernoulli(key_apply, fn.p), applied, lambda: (image, segmentation))
  name, base, keywords = _geometry_of(fn)
  if name is None:
    raise ValueError(
        f"cannot tell whether augmentation {fn!r} moves pixels, so it cannot be applied to a "
        f"segmentation map; use the functions of cnnjax.data.augment (geometric: "
        f"{sorted(GEOMETRIC)}) inside Compose or RandomApply")
  out = fn(key, image)
  if name not in GEOMETRIC:
    return out, segmentation  # photometric: the classes stay where they are
  keywords.update(_NEAREST.get(name, {}))
  if "fill" in inspect.signature(base).parameters:
    keywords["fill"] = float(fill)  # padding and corners are unlabelled
  moved = base(key, segmentation[..., None].astype(jnp.float32), **keywords)
  return out, jnp.round(moved[..., 0]).astype(segmentation.dtype)


def with_segmentation(fn: Augmentation, fill: int = 255) -> Callable[[Array, Array, Array], tuple[Array, Array]]:
  """``fn`` (from ``build``) applied to an image and its class map, ``f(key, image, seg)``.

  The image gets exactly what ``fn(key, image)`` gives (same key, same
  draws). Augmentations in ``GEOMETRIC`` (crops, flips, rotations,
  random-resized-crop) move the class map ``(H, W)`` with the same geometry,
  sampled by nearest neighbour so that classes are never blended; pixels
  brought in from outside the image (padding, rotated corners) get ``fill``,
  an ignore label. Photometric ones (blur, colour jitter, noise, erasing)
  leave the map as it is. ``RandomChoice`` is refused (``ValueError``).

  Args:
    fn: an augmentation built by ``build`` (a ``Compose``), one of this
      module's functions, a partial of one, or a ``RandomApply`` of those.
    fill: the class of pixels with no source pixel (the task's ignore label).

  Returns:
    ``f(key, image (H, W, C), segmentation (H, W) int) -> (image, segmentation)``.
  """

  def apply(key: Array, image: Array, segmentation: Array) -> tuple[Array, Array]:
    _check_image(image)
    if not hasattr(segmentation, "shape") or tuple(segmentation.shape) != tuple(image.shape[:2]):
      raise ValueError(
          f"segmentation must be one (H, W) = {tuple(image.shape[:2])} class map for the image "
          f"{tuple(image.shape)}, got shape {tuple(getattr(segmentation, 'shape', ()))}")
    return _paired(fn, key, image, segmentation, fill)

  return apply
