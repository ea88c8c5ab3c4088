"""Reading examples on the host: batched decoding, resizing, centre and random-resized crops.

* ``read_examples`` / ``read_arrays``: a source's examples at some indices,
  decoded with batched ``__getitems__`` reads into stacked arrays.
* ``resize_and_center_crop``: the evaluation view of a variable-size image
  (shorter side to ``size / 0.875``, the centre ``size`` x ``size``), as the
  Flax ImageNet example evaluates.
* ``random_resized_crop_box`` / ``RandomResizedCrops``: the training view of
  a variable-size image, a crop of random area and aspect ratio of the whole
  decoded image resized to ``size`` x ``size`` (Inception's crop, as the Flax
  ImageNet example trains), drawn from ``(seed, epoch, index)`` so that every
  epoch sees new crops and a resumed run the same ones.

Class maps (``'segmentation'``) follow their image's geometry, resized by
nearest neighbour so that classes never mix.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The features whose arrays follow the image's geometry.
DENSE_FEATURES = ("segmentation",)


def _resize(image: np.ndarray, width: int, height: int, nearest: bool = False) -> np.ndarray:
  """``(H, W, C) uint8`` resized to ``(height, width, C)`` with Pillow (bilinear, antialiased; or nearest)."""
  from PIL import Image

  channels = image.shape[-1]
  pil = Image.fromarray(image[..., 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.NEAREST if nearest else Image.BILINEAR))
  return out.reshape(height, width, channels)


def resize_and_center_crop(image: np.ndarray, size: int, crop_fraction: float = 0.875,
                           nearest: bool = False) -> np.ndarray:
  """Resizes the shorter side to ``round(size / crop_fraction)``, then crops the centre.

  Args:
    image: ``(H, W, C) uint8``, any ``H``, ``W``.
    size: the side of the square output.
    crop_fraction: the centre crop's side over the resized shorter side.
    nearest: nearest-neighbour instead of bilinear (for class maps).

  Returns:
    ``(size, size, C) uint8`` (bilinear, antialiased by Pillow).
  """
  image = np.asarray(image)
  height, width, channels = image.shape
  shorter = max(size, round(size / crop_fraction))
  scale = shorter / min(height, width)
  new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
  resized = _resize(image, new_w, new_h, nearest)
  top, left = (new_h - size) // 2, (new_w - size) // 2
  return resized[top:top + size, left:left + size]


@dataclasses.dataclass(frozen=True)
class CenterCrops:
  """A source whose images are resized and centre-cropped to ``size`` x ``size`` (``resize_and_center_crop``)."""

  source: Any
  size: int

  def __len__(self) -> int:
    return len(self.source)

  def _crop(self, example: dict) -> dict:
    out = dict(example, image=resize_and_center_crop(example["image"], self.size))
    for key in DENSE_FEATURES:
      if key in example:
        out[key] = resize_and_center_crop(example[key], self.size, nearest=True)
    return out

  def __getitem__(self, index: int) -> dict:
    return self._crop(self.source[index])

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    return [self._crop(e) for e in self.source.__getitems__(indices)]


def read_examples(
    source: Any, indices: Sequence[int], extra: Sequence[str] = (), chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """Decodes ``source`` at ``indices`` with batched reads, with the features named in ``extra``.

  Returns:
    ``(images (N, H, W, C) uint8, labels (N,) int32, {name: (N, ...)})``:
    ``'target'`` float32 ``(N, k)``, ``'segmentation'`` int32 ``(N, H, W)``.
    Examples without a ``'label'`` read 0.
  """
  indices = [int(i) for i in indices]
  images, labels = [], []
  extras: dict[str, list] = {k: [] for k in extra}
  for start in range(0, len(indices), chunk):
    examples = source.__getitems__(indices[start:start + chunk])
    images.extend(np.asarray(e["image"]) for e in examples)
    labels.extend(int(e.get("label", 0)) for e in examples)
    for key in extra:
      if examples and key not in examples[0]:
        raise ValueError(f"data set examples have features {sorted(examples[0])}; expected {key!r}")
      extras[key].extend(np.asarray(e[key]) for e in examples)
  if not images:
    return np.zeros((0,), np.uint8), np.zeros((0,), np.int32), {k: np.zeros((0,)) for k in extra}
  out = {}
  for key, values in extras.items():
    stacked = np.stack(values)
    if key == "segmentation":
      out[key] = stacked.reshape(stacked.shape[:3]).astype(np.int32)
    else:
      out[key] = stacked.astype(np.float32).reshape(len(values), -1)
  return np.stack(images).astype(np.uint8, copy=False), np.asarray(labels, np.int32), out


def read_arrays(source: Any, indices: Sequence[int], chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """Decodes ``source`` at ``indices`` with batched reads.

  Returns:
    ``(images (N, H, W, C) uint8, labels (N,) int32)``.
  """
  images, labels, _ = read_examples(source, indices, (), chunk)
  return images, labels


@dataclasses.dataclass(frozen=True)
class Renamed:
  """A source whose image and label features have other names (``extra`` features pass through)."""

  source: Any
  image_key: str
  label_key: str
  extra: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.source)

  def _rename(self, example: dict) -> dict:
    out = {"image": example[self.image_key], "label": example.get(self.label_key, 0)}
    out.update({k: example[k] for k in self.extra if k in example})
    return out

  def __getitem__(self, index: int) -> dict:
    return self._rename(self.source[index])

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    return [self._rename(e) for e in self.source.__getitems__(indices)]


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """A crop box ``(top, left, h, w)`` of ``scale`` area fraction and ``ratio`` aspect (w / h).

  Ten tries of a uniform area fraction and a log-uniform aspect ratio, each
  box placed uniformly where it fits (so every pixel, borders included, can
  be in a crop); if none fits, the largest centred box of an allowed aspect
  ratio. The algorithm of torchvision's ``RandomResizedCrop.get_params``.
  """
  area = height * width
  log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(*log_ratio))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def _crop_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int,
                 nearest: bool = False) -> np.ndarray:
  """``image[box]`` resized to ``(size, size, C)`` (bilinear; nearest for class maps)."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  top, left, h, w = box
  return _resize(image[top:top + h, left:left + w], size, size, nearest)


@dataclasses.dataclass(frozen=True)
class RandomResizedCrops:
  """A source of training crops: each example a random-resized crop of the whole decoded image.

  The crop of example ``index`` in epoch ``epoch`` is drawn from
  ``np.random.default_rng([seed, epoch, index])``: the same for the same
  seed, new every epoch, independent of the batch and the process that
  reads it. ``for_epoch(e)`` is the source of epoch ``e`` (the loaders call
  it with the epoch of every batch).

  Attributes:
    source: examples of any image size (``'image'`` ``(H, W, C)``; a
      ``'segmentation'`` map is cropped with the same box).
    size: the side of the square output.
    seed: the run's seed.
    scale, ratio: as ``random_resized_crop_box``.
    epoch: the epoch this view draws for.
  """

  source: Any
  size: int
  seed: int
  scale: tuple[float, float] = (0.08, 1.0)
  ratio: tuple[float, float] = (3 / 4, 4 / 3)
  epoch: int = 0

  def __len__(self) -> int:
    return len(self.source)

  def for_epoch(self, epoch: int) -> RandomResizedCrops:
    """This source, drawing the crops of ``epoch``."""
    return dataclasses.replace(self, epoch=int(epoch))

  def decoded(self, count: int) -> RandomResizedCrops:
    """This source over its first ``count`` examples decoded once and kept in memory.

    The decoded images keep their own sizes; every read crops them anew.
    """
    return dataclasses.replace(self, source=InMemory(self.source.__getitems__(range(count))))

  def crop(self, example: dict, index: int) -> dict:
    """``example`` (at ``index``) with its image (and class map) cropped and resized."""
    image = np.asarray(example["image"])
    rng = np.random.default_rng([self.seed, self.epoch, int(index)])
    box = random_resized_crop_box(rng, image.shape[0], image.shape[1], self.scale, self.ratio)
    out = dict(example, image=_crop_resize(image, box, self.size))
    for key in DENSE_FEATURES:
      if key in example:
        out[key] = _crop_resize(example[key], box, self.size, nearest=True)
    return out

  def __getitem__(self, index: int) -> dict:
    return self.crop(self.source[index], index)

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    return [self.crop(e, i) for e, i in zip(self.source.__getitems__(indices), indices)]


@dataclasses.dataclass(frozen=True)
class InMemory:
  """Decoded examples (a list of dicts) as a source."""

  examples: list

  def __len__(self) -> int:
    return len(self.examples)

  def __getitem__(self, index: int) -> dict:
    return self.examples[index]

  def __getitems__(self, indices: Sequence[int]) -> list[dict]:
    return [self.examples[i] for i in indices]
