"""Image folders: one sub-folder per class, JPEG or PNG images of one size.

The layout of EuroSAT and of torchvision's ``ImageFolder``::

    root/
      AnnualCrop/  img_0001.jpg  img_0002.jpg ...
      Forest/      ...

Classes are the sub-folder names in sorted order (label ``i`` is the ``i``-th
name). The examples of each class are split into ``train``/``validation``/
``test`` by a stratified, seeded split: per class, the sorted file list is
permuted with ``np.random.default_rng(seed)`` and cut by ``fractions`` (the
validation and test counts rounded, train takes the rest), so the split depends
only on the file names, the fractions and the seed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class FolderSplit:
  """One split of an image folder: a random-access source of ``{'image', 'label'}`` dicts.

  ``source[i]`` decodes file ``i`` to ``(H, W, C) uint8``; ``source.__getitems__``
  decodes a list of indices (what the loaders call).
  """

  paths: tuple[str, ...]
  labels: tuple[int, ...]
  channels: int

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray | int]:
    from PIL import Image

    with Image.open(self.paths[index]) as img:
      img = img.convert("L" if self.channels == 1 else "RGB")
      array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
      array = array[..., None]
    return {"image": array, "label": self.labels[index]}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray | int]]:
    return [self[int(i)] for i in indices]


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """A scanned image folder (see module docstring).

  Attributes:
    root: the folder holding one sub-folder per class.
    class_names: sub-folder names; label ``i`` is ``class_names[i]``.
    image_shape: ``(H, W, C)`` shared by every image, ``H`` and ``W`` ``None``
      when the images differ in size (then they are read with an
      ``image_size``); ``C`` is 1 when every image is greyscale, else 3 (RGB).
    splits: ``{'train': FolderSplit, 'validation': ..., 'test': ...}``.
    fractions: ``(train, validation, test)`` fractions used for the split.
    seed: seed of the split.
  """

  root: str
  class_names: tuple[str, ...]
  image_shape: tuple[int | None, int | None, int]
  splits: dict[str, FolderSplit]
  fractions: tuple[float, float, float]
  seed: int
  size_detail: str = ""  # The sizes and example files of a folder that mixes sizes.


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
  fractions = tuple(float(f) for f in fractions)
  if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(
        f"fractions must be three non-negative numbers (train, validation, test) "
        f"summing to 1, got {fractions}")
  return fractions  # type: ignore[return-value]


def scan_image_folder(
    root: str,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> ImageFolder:
  """Scans ``root``, checks that its images share one size, and splits them.

  Args:
    root: folder with one sub-folder per class holding ``.png``/``.jpg``/``.jpeg``.
    fractions: ``(train, validation, test)`` fractions, summing to 1.
    seed: seed of the stratified split.

  Returns:
    An ``ImageFolder``.

  Raises:
    ValueError: ``root`` is missing, has no class sub-folders or no images, or
      its images differ in size (the message names files of each size).
  """
  from PIL import Image

  fractions = _check_fractions(fractions)
  root = os.path.abspath(os.path.expanduser(root))
  if not os.path.isdir(root):
    raise ValueError(f"image folder {root!r} does not exist or is not a directory")
  class_names = tuple(sorted(
      d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith(".")))
  if not class_names:
    raise ValueError(
        f"image folder {root!r} has no class sub-folders; expected root/<class>/<image>.png|jpg")
  files: list[list[str]] = []
  for name in class_names:
    directory = os.path.join(root, name)
    files.append(sorted(
        os.path.join(directory, f) for f in os.listdir(directory)
        if f.lower().endswith(IMAGE_EXTENSIONS)))
  if not any(files):
    raise ValueError(
        f"image folder {root!r} has no images: expected {', '.join(IMAGE_EXTENSIONS)} "
        f"files in its class sub-folders {list(class_names)}")
  empty = [n for n, f in zip(class_names, files) if not f]
  if empty:
    raise ValueError(f"image folder {root!r}: class sub-folders with no images: {empty}")

  sizes: dict[tuple[int, int], list[str]] = {}
  grey = True
  for path in (p for class_files in files for p in class_files):
    with Image.open(path) as img:
      sizes.setdefault((img.height, img.width), []).append(path)
      grey = grey and img.mode in ("L", "1", "I;16", "I")
  detail = ""
  if len(sizes) > 1:
    # Variable size: readable with an image_size (training crops, centred evaluation).
    detail = "; ".join(
        f"{h}x{w} (HxW): {len(p)} files, e.g. {', '.join(os.path.relpath(x, root) for x in p[:3])}"
        for (h, w), p in sorted(sizes.items(), key=lambda kv: -len(kv[1])))
    detail = f"image folder {root!r} mixes image sizes: {detail}"
    height = width = None
  else:
    (height, width), = sizes
  channels = 1 if grey else 3

  rng = np.random.default_rng(seed)
  chosen: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
  for label, class_files in enumerate(files):
    order = rng.permutation(len(class_files))
    n = len(class_files)
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    n_test = min(n_test, n - n_val)
    n_train = n - n_val - n_test
    cuts = {"train": order[:n_train], "validation": order[n_train:n_train + n_val],
            "test": order[n_train + n_val:]}
    for split, idx in cuts.items():
      chosen[split].extend((class_files[i], label) for i in sorted(idx))
  splits = {}
  for split, items in chosen.items():
    items.sort()  # in path order: the split's order does not depend on the permutation
    splits[split] = FolderSplit(
        paths=tuple(p for p, _ in items), labels=tuple(l for _, l in items), channels=channels)
  return ImageFolder(
      root=root, class_names=class_names, image_shape=(height, width, channels),
      splits=splits, fractions=fractions, seed=seed, size_detail=detail)
