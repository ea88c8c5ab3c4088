"""Data sets by name: the embedded ``digits``, any TFDS builder, image folders.

A name is one of

* ``'digits'`` (or another embedded builder in ``EMBEDDED``): prepared on
  first use, offline;
* ``'folder:/path/to/root'``: an image folder split 0.8/0.1/0.1 with seed 0,
  or a name given to ``image_folder(root, name=..., fractions=..., seed=...)``;
* any other TFDS builder name (``'mnist'``, ``'cifar10'``, ``'imagenet2012'``,
  ``'cifar10:3.0.2'``), read with ``tfds.data_source`` from its ArrayRecord
  files; it must have been prepared (``python -m cnnjax.data.prepare NAME``).

Every split is opened as a random-access source of ``{'image': (H, W, C)
uint8, 'label': int}`` examples with ``__len__`` and ``__getitems__``. Data
sets for other tasks add ``'target'`` (regression, float ``(k,)``; then
``DatasetInfo.num_targets = k``) or ``'segmentation'`` (a per-pixel class map
``(H, W, 1)`` uint8, a ``tfds.features.LabeledImage``; then
``DatasetInfo.segmentation`` is true and ``num_classes`` counts the pixel
classes); a data set without a ``'label'`` reads label 0.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import shlex
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data import builders, decode
from cnnjax.data import digit_scenes as digit_scenes_lib
from cnnjax.data import digits as digits_lib
from cnnjax.data import digits_rotation as digits_rotation_lib
from cnnjax.data import folder as folder_lib

FOLDER_PREFIX = "folder:"
EMBEDDED: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "digits": digits_lib.Digits,
    "digits_rotation": digits_rotation_lib.DigitsRotation,
    "digit_scenes": digit_scenes_lib.DigitScenes,
}
#: Features passed through to batches beside the image and label, by task.
EXTRA_FEATURES = ("target", "segmentation")
STATS_MAX_EXAMPLES = 10_000

_FOLDERS: dict[str, folder_lib.ImageFolder] = {}
_STATS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_LOCK = threading.Lock()


class DatasetNotPreparedError(ValueError):
  """A TFDS data set has no prepared ArrayRecord files; the message has the command that prepares it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What the training loop needs to know about a data set.

  Attributes:
    name: the name it was opened with.
    image_shape: ``(H, W, C)`` of every image; ``H`` and ``W`` are ``None``
      for data sets of variable image size (e.g. ``imagenet2012``) until an
      ``image_size`` is chosen.
    num_classes: number of labels; labels are ``0 .. num_classes - 1``
      (for a segmentation data set: the number of pixel classes).
    splits: split name -> number of examples.
    num_targets: ``k``, the length of the float ``'target'`` of a regression
      data set; 0 when there is none.
    segmentation: whether examples carry a ``'segmentation'`` class map.
    sizes: for a variable-size image folder, its sizes and example files
      (said when no ``image_size`` is chosen).
  """

  name: str
  image_shape: tuple[int | None, int | None, int]
  num_classes: int
  splits: dict[str, int]
  num_targets: int = 0
  segmentation: bool = False
  sizes: str = dataclasses.field(default="", compare=False)

  @property
  def extra_features(self) -> tuple[str, ...]:
    """The features a loader passes through beside image and label: ``'target'``, ``'segmentation'``."""
    return (("target",) if self.num_targets else ()) + (("segmentation",) if self.segmentation else ())

  @property
  def variable_size(self) -> bool:
    """Whether images differ in size, so that an ``image_size`` must be chosen."""
    return any(d is None for d in self.image_shape[:2])

  def resized(self, image_size: int | None) -> DatasetInfo:
    """This info with images resized to ``image_size`` x ``image_size`` (None: unchanged).

    Raises:
      ValueError: the data set has variable image sizes and no ``image_size``
        was given.
    """
    if image_size:
      if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
      return dataclasses.replace(self, image_shape=(image_size, image_size, self.image_shape[2]))
    if self.variable_size:
      sizes = f" ({self.sizes})" if self.sizes else ""
      raise ValueError(
          f"data set {self.name!r} has images of variable size {self.image_shape}{sizes}; "
          f"expected an image_size to resize them to (config: --config.data.image_size=224)")
    return self


def image_folder(
    root: str,
    *,
    name: str | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> DatasetInfo:
  """Scans an image folder and registers it under ``name`` for ``make_loader``.

  Args:
    root: folder with one sub-folder per class (see ``cnnjax.data.folder``).
    name: the name to register; default ``'folder:' + root``.
    fractions: ``(train, validation, test)`` fractions of each class.
    seed: seed of the stratified split.

  Returns:
    The folder's ``DatasetInfo`` (splits ``train``, ``validation``, ``test``).
  """
  scanned = folder_lib.scan_image_folder(root, fractions=fractions, seed=seed)
  name = name or FOLDER_PREFIX + root
  if name in EMBEDDED:
    raise ValueError(f"name {name!r} is taken by an embedded data set; choose another")
  with _LOCK:
    _FOLDERS[name] = scanned
    for key in [k for k in _STATS if k[0] == name]:
      del _STATS[key]
  return _folder_info(name, scanned)


def registered_names() -> list[str]:
  """Embedded data sets and registered image folders (any TFDS name also works)."""
  return sorted(EMBEDDED) + sorted(_FOLDERS)


def _folder(name: str) -> folder_lib.ImageFolder | None:
  with _LOCK:
    if name in _FOLDERS:
      return _FOLDERS[name]
  if name.startswith(FOLDER_PREFIX):
    scanned = folder_lib.scan_image_folder(name[len(FOLDER_PREFIX):])
    with _LOCK:
      _FOLDERS.setdefault(name, scanned)
    return scanned
  return None


def _folder_info(name: str, scanned: folder_lib.ImageFolder) -> DatasetInfo:
  return DatasetInfo(
      name=name, image_shape=scanned.image_shape, num_classes=len(scanned.class_names),
      splits={s: len(v) for s, v in scanned.splits.items()}, sizes=scanned.size_detail)


def prepare_command(name: str, data_dir: str | None) -> str:
  """The shell command that prepares TFDS data set ``name`` as ArrayRecord."""
  command = f"python -m cnnjax.data.prepare {shlex.quote(name)}"
  if data_dir:
    command += f" --data_dir {shlex.quote(os.fspath(data_dir))}"
  return command


def _unknown(name: str) -> ValueError:
  known = [*EMBEDDED, *_FOLDERS, *tfds.list_builders(with_community_datasets=False)]
  close = difflib.get_close_matches(name, known, n=1)
  hint = f" (did you mean {close[0]!r}?)" if close else ""
  return ValueError(
      f"unknown data set {name!r}{hint}: expected an embedded data set {sorted(EMBEDDED)}, "
      f"a registered image folder {sorted(_FOLDERS)}, 'folder:/path/to/root', or a "
      f"TFDS builder name (see tfds.list_builders(), e.g. 'mnist', 'cifar10')")


def _builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The TFDS builder of ``name``; embedded ones are prepared first."""
  if name in EMBEDDED:
    data_dir = os.path.expanduser(data_dir) if data_dir else builders.default_data_dir()
    builder = EMBEDDED[name](data_dir=data_dir, file_format="array_record")
    if not builders.is_prepared(builder):
      builders.prepare_builder(builder)
      builder = EMBEDDED[name](data_dir=data_dir, file_format="array_record")
    return builder
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise _unknown(name) from None
  if not builders.is_prepared(builder):
    from cnnjax.data import prepare as prepare_lib  # noqa: PLC0415  (imports sources)
    raise DatasetNotPreparedError(
        f"TFDS data set {name!r} is not prepared in {os.fspath(builder.data_dir_root)} "
        f"(no {os.fspath(builder.data_path)}/dataset_info.json). Prepare it once "
        f"(needs `pip install 'cnnjax[prepare]'`). With internet:\n  "
        f"{prepare_command(name, data_dir)}\nWithout internet, "
        f"{prepare_lib.offline_instructions(name, builder, data_dir)}")
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise DatasetNotPreparedError(
        f"TFDS data set {name!r} in {os.fspath(builder.data_path)} is stored as "
        f"{builder.info.file_format.value}; expected array_record (readable without "
        f"TensorFlow). Convert or re-prepare it with:\n  "
        f"{prepare_command(name, data_dir)}")
  return builder


def _keys(builder: tfds.core.DatasetBuilder) -> tuple[str, str]:
  keys = builder.info.supervised_keys
  if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
    if keys[1] in EXTRA_FEATURES:
      # A regression or segmentation data set: its class label, if any, is 'label'.
      return keys[0], "label"
    return keys
  return "image", "label"


def _tfds_info(name: str, builder: tfds.core.DatasetBuilder) -> DatasetInfo:
  image_key, label_key = _keys(builder)
  features = builder.info.features
  extra = [k for k in EXTRA_FEATURES if k in features]
  if image_key not in features or (label_key not in features and not extra):
    raise ValueError(
        f"TFDS data set {name!r} has features {list(features.keys())}; expected an "
        f"image and a class label (supervised_keys {image_key!r}, {label_key!r}), a "
        f"'target' or a 'segmentation'")
  shape = tuple(features[image_key].shape)
  if len(shape) != 3 or shape[2] is None:
    raise ValueError(
        f"TFDS data set {name!r} has images of shape {shape}; expected (H, W, C) with a "
        f"known number of channels")
  num_targets = 0
  if "target" in features:
    target_shape = tuple(features["target"].shape)
    if len(target_shape) != 1 or not target_shape[0]:
      raise ValueError(
          f"TFDS data set {name!r}: feature 'target' has shape {target_shape}; expected (k,), "
          f"k regression targets per example")
    num_targets = int(target_shape[0])
  if "segmentation" in features:
    num_classes = getattr(features["segmentation"], "num_classes", None)
    if not num_classes:
      raise ValueError(
          f"TFDS data set {name!r}: feature 'segmentation' is a "
          f"{type(features['segmentation']).__name__}; expected a tfds.features.LabeledImage "
          f"(it gives the number of pixel classes)")
  elif label_key in features:
    num_classes = getattr(features[label_key], "num_classes", None)
    if not num_classes:
      raise ValueError(f"TFDS data set {name!r}: feature {label_key!r} is not a ClassLabel")
  else:
    num_classes = 1  # A regression data set without a class label: every label reads 0.
  splits = {s: int(v.num_examples) for s, v in builder.info.splits.items()}
  return DatasetInfo(name=name, image_shape=shape, num_classes=int(num_classes), splits=splits,
                     num_targets=num_targets, segmentation="segmentation" in features)


def ensure_prepared(name: str, *, data_dir: str | None = None) -> None:
  """Makes ``name`` readable, or explains how.

  Embedded data sets (``digits``) are prepared if needed (offline, under a
  file lock, atomically). Image folders are scanned and checked. TFDS data sets
  must already be prepared.

  Raises:
    DatasetNotPreparedError: a TFDS data set is not prepared as ArrayRecord;
      the message contains the command that prepares it.
    ValueError: unknown name, or a malformed image folder.
  """
  dataset_info(name, data_dir=data_dir)


def dataset_info(
    name: str, *, data_dir: str | None = None, image_size: int | None = None
) -> DatasetInfo:
  """Image shape, number of classes and split sizes of ``name`` (preparing embedded ones).

  With ``image_size``, ``image_shape`` is that of the resized images the
  loaders yield. Without it, variable-size data sets report ``None`` for
  ``H`` and ``W``. (``Dataset(name).info``, for one question.)
  """
  dataset = Dataset(name, data_dir=data_dir, image_size=image_size)
  return dataset.info


def open_split(
    name: str, split: str, *, data_dir: str | None = None, image_size: int | None = None
) -> tuple[Any, DatasetInfo]:
  """Opens one split as a random-access source of ``{'image', 'label'}`` examples.

  ``Dataset(name, ...).source(split)`` and its info, for one question; see
  ``Dataset.source``.
  """
  dataset = Dataset(name, data_dir=data_dir, image_size=image_size)
  return dataset.source(split), dataset.info


class Dataset:
  """One data set, resolved once: its info, the source of every split, its statistics.

  The name is looked up (an image folder's scan, a TFDS builder, an
  embedded builder prepared if needed) when the object is made; the loaders
  of a run share it, so nothing is resolved again before the first step.

  Example::

    dataset = data.Dataset('digits')
    train = data.make_loader(dataset, 'train', batch_size=64, train=True, seed=0)
    test = data.make_loader(dataset, 'test', batch_size=256, train=False, seed=0)

  Args:
    name: as ``make_loader``'s (``'digits'``, a TFDS name, ``'folder:/path'``).
    data_dir: the TFDS data directory (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``).
    image_size: the side of the square images the sources give; required for
      variable-size data sets (see ``source``).
    crop_scale: the area fractions of training crops of a variable-size data
      set (``decode.RandomResizedCrops``).

  Attributes:
    name, data_dir, image_size, crop_scale: as given.
    info: the ``DatasetInfo``, of the resized images when ``image_size`` is given.

  Raises:
    TypeError: ``name`` is not a non-empty string.
    ValueError: an unknown name or a malformed image folder.
    DatasetNotPreparedError: a TFDS data set that is not prepared (the
      message has the command that prepares it).
  """

  def __init__(self, name: str, *, data_dir: str | None = None, image_size: int | None = None,
               crop_scale: tuple[float, float] = (0.08, 1.0)):
    if not isinstance(name, str) or not name:
      raise TypeError(f"data set name must be a non-empty str, got {name!r}")
    self.name, self.data_dir, self.image_size = name, data_dir, image_size or None
    self.crop_scale = tuple(float(v) for v in crop_scale)
    if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
      raise ValueError(
          f"crop_scale must be (lo, hi) with 0 < lo <= hi <= 1 (config data.crop_scale), "
          f"got {crop_scale!r}")
    self._folder = _folder(name)
    self._builder = None if self._folder is not None else _builder(name, data_dir)
    raw = (_folder_info(name, self._folder) if self._folder is not None
           else _tfds_info(name, self._builder))
    self._raw_info = raw
    self.info = raw.resized(self.image_size) if self.image_size else raw

  def __repr__(self) -> str:
    return f"Dataset({self.name!r}, image_size={self.image_size}, splits={self.info.splits})"

  def _raw_source(self, split: str) -> Any:
    _check_split(self._raw_info, split)
    if self._folder is not None:
      return self._folder.splits[split]
    source = tfds.data_source(self.name, split=split,
                              data_dir=os.fspath(self._builder.data_dir_root), download=False)
    image_key, label_key = _keys(self._builder)
    if (image_key, label_key) != ("image", "label"):
      source = decode.Renamed(source, image_key, label_key, EXTRA_FEATURES)
    return source

  def source(self, split: str, *, train: bool = False, seed: int = 0) -> Any:
    """One split as a random-access source of ``{'image', 'label', ...}`` examples.

    Without ``image_size`` the images are as stored. With it, evaluation
    (``train=False``) images are resized (shorter side to
    ``image_size / 0.875``) and centre-cropped, as ImageNet evaluation does;
    training images of a variable-size data set are random-resized crops of
    the whole decoded image (``decode.RandomResizedCrops`` with ``seed`` and
    ``crop_scale``; its ``for_epoch`` draws each epoch's crops), as ImageNet
    training does; those of a fixed-size data set are resized as for
    evaluation.

    Returns:
      An object with ``__len__``, ``__getitem__`` and ``__getitems__``
      returning dicts with ``image`` ``(H, W, C) uint8`` and ``label``.

    Raises:
      ValueError: an unknown split; a variable-size data set without ``image_size``.
    """
    self._raw_info.resized(self.image_size)  # ValueError: variable size and no image_size.
    source = self._raw_source(split)
    if not self.image_size:
      return source
    if train and self._raw_info.variable_size:
      return decode.RandomResizedCrops(source, self.image_size, seed, scale=self.crop_scale)
    return decode.CenterCrops(source, self.image_size)

  def channel_stats(self) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of the ``train`` split, pixels scaled to ``[0, 1]``.

    Computed on at most ``STATS_MAX_EXAMPLES`` evenly spaced examples of the
    split named ``train`` (else the first split), centre-cropped, in float64;
    once per process and data set.

    Returns:
      ``(mean, std)``, each ``(C,) float32``; a zero std is replaced by 1.
    """
    data_dir = os.path.abspath(os.path.expanduser(self.data_dir)) if self.data_dir else None
    key = (self.name, data_dir, self.image_size)
    with _LOCK:
      stats = _STATS.get(key)
    if stats is None:
      stats = _channel_stats(self)
      with _LOCK:
        _STATS[key] = stats
    return stats


def _check_split(info: DatasetInfo, split: str) -> None:
  if info.splits and split not in info.splits:
    raise ValueError(
        f"data set {info.name!r} has no split {split!r}; expected one of {sorted(info.splits)}")


def channel_stats(
    name: str, *, data_dir: str | None = None, image_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """``Dataset(name, ...).channel_stats()``: per-channel mean and std of the ``train`` split."""
  return Dataset(name, data_dir=data_dir, image_size=image_size).channel_stats()


def _channel_stats(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
  split = "train" if "train" in dataset.info.splits else sorted(dataset.info.splits)[0]
  source = dataset.source(split)
  n = len(source)
  if n <= STATS_MAX_EXAMPLES:
    indices = np.arange(n)
  else:
    indices = np.unique(np.linspace(0, n - 1, STATS_MAX_EXAMPLES).round().astype(np.int64))
  images, _ = decode.read_arrays(source, indices)
  pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
  mean = pixels.mean(axis=0)
  std = pixels.std(axis=0)
  std = np.where(std > 1e-12, std, 1.0)
  return mean.astype(np.float32), std.astype(np.float32)
