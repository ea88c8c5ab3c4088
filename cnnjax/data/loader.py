"""Batches for training and evaluation: an in-memory path and a Grain path with the same order.

Which examples form a batch is decided by one plan (``BatchPlan``), shared by
both pipelines, so that for the same seed they yield the same batches:

* ``train=True``: epoch ``e`` visits the examples in the order
  ``np.random.default_rng([seed, e]).permutation(n)``; global batch ``b`` of
  the epoch is ``order[b * B:(b + 1) * B]``, and the partial last batch is
  dropped (``steps_per_epoch = n // B``). The stream is infinite.
* ``train=False``: one pass in order, ``0 .. n - 1``; the last global batch is
  padded to ``B`` with ``mask=False`` entries (image 0, label 0), so that
  every example counts exactly once with the mask.
* Process ``p`` of ``P`` takes rows ``[p * B / P, (p + 1) * B / P)`` of each
  global batch, so concatenating the ``P`` local batches in process order gives
  the single-process batch.

The examples come from one ``sources.Dataset`` (resolved once, shared by the
loaders of a run). Training images of a variable-size data set are random-
resized crops of the whole decoded image, drawn from ``(seed, epoch, index)``
(``decode.RandomResizedCrops``); every other image is as the source gives it.
Images are normalised as ``(x / 255 - mean) / std`` with the per-channel mean
and std of the ``train`` split (``sources.channel_stats``), to ``float32``.
Data sets of other tasks (``DatasetInfo.extra_features``) add ``'target'``
float32 ``(B, k)`` (regression) or ``'segmentation'`` int32 ``(B, H, W)``
(per-pixel classes), zero on padded rows, to the same batches.

* ``pipeline='memory'``: decodes the split once into a ``uint8`` array (batched
  ``__getitems__`` reads) and gathers batches by index. For data sets that fit
  in RAM (digits, MNIST, CIFAR).
* ``pipeline='grain'``: ``grain.MapDataset`` of batch numbers, mapped to the
  plan's indices, then to batched reads and normalisation, as a
  ``grain.IterDataset`` prefetched by ``worker_count`` processes. Streams.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from cnnjax.data import decode, sources

PIPELINES = ("memory", "grain")
Batch = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """Which examples are in step ``k``'s local batch (see module docstring).

  Attributes:
    num_examples: ``n``, examples in the split (after ``subset``).
    batch_size: ``B``, the global batch.
    process_index, process_count: ``p`` and ``P``.
    train: shuffled infinite epochs dropping the remainder, or one padded pass.
    seed: shuffling seed.
  """

  num_examples: int
  batch_size: int
  process_index: int
  process_count: int
  train: bool
  seed: int

  @property
  def local_batch_size(self) -> int:
    return self.batch_size // self.process_count

  @property
  def steps_per_epoch(self) -> int:
    if self.train:
      return self.num_examples // self.batch_size
    return math.ceil(self.num_examples / self.batch_size)

  def order(self, epoch: int) -> np.ndarray:
    """Global example order of ``epoch``: ``(n,) int64``."""
    if not self.train:
      return np.arange(self.num_examples)
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

  def __call__(self, step: int, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Local ``(indices (B / P,) int64, mask (B / P,) bool)`` of step ``step``."""
    epoch, b = divmod(int(step), self.steps_per_epoch)
    if order is None:
      order = self.order(epoch)
    rows = np.arange(b * self.batch_size, (b + 1) * self.batch_size)
    local = rows[self.process_index * self.local_batch_size:
                 (self.process_index + 1) * self.local_batch_size]
    mask = local < self.num_examples
    indices = order[np.where(mask, local, 0)]
    return indices.astype(np.int64), mask


def normalize_batch(
    images: np.ndarray, labels: np.ndarray, mask: np.ndarray, mean: np.ndarray, std: np.ndarray,
    extras: dict[str, np.ndarray] | None = None,
) -> Batch:
  """``uint8`` ``(B, H, W, C)`` images -> the batch dict, padded rows zeroed.

  ``extras`` (``'target'`` ``(B, k)``, ``'segmentation'`` ``(B, H, W)``) are
  added as they are, zeroed on padded rows.
  """
  image = (images.astype(np.float32) / np.float32(255.0) - mean) / std
  image = np.where(mask[:, None, None, None], image, np.float32(0.0)).astype(np.float32)
  label = np.where(mask, labels, 0).astype(np.int32)
  batch = {"image": image, "label": label, "mask": mask.astype(np.bool_)}
  for key, value in (extras or {}).items():
    keep = mask.reshape(-1, *(1,) * (value.ndim - 1))
    batch[key] = np.where(keep, value, 0).astype(value.dtype)
  return batch


@dataclasses.dataclass(frozen=True)
class _PlanStep:
  """Grain transform: dataset index (the step) -> the plan's indices and mask, and the epoch."""

  plan: BatchPlan

  def __call__(self, index: int, _: Any) -> tuple[np.ndarray, np.ndarray, int]:
    return (*self.plan(index), index // self.plan.steps_per_epoch)


def _for_epoch(source: Any, epoch: int) -> Any:
  """The view of ``source`` for ``epoch`` (training crops change every epoch; others do not)."""
  return source.for_epoch(epoch) if hasattr(source, "for_epoch") else source


@dataclasses.dataclass(frozen=True)
class _ReadBatch:
  """Grain transform: indices and mask -> a normalised batch, with one batched read."""

  source: Any
  mean: np.ndarray
  std: np.ndarray
  extra: tuple[str, ...] = ()

  def __call__(self, item: tuple[np.ndarray, np.ndarray, int]) -> Batch:
    indices, mask, epoch = item
    source = _for_epoch(self.source, epoch)
    if self.extra:
      images, labels, extras = decode.read_examples(source, indices, self.extra)
      return normalize_batch(images, labels, mask, self.mean, self.std, extras)
    images, labels = decode.read_arrays(source, indices)
    return normalize_batch(images, labels, mask, self.mean, self.std)


class Loader:
  """Iterable of batches with a checkpointable position; build it with ``make_loader``.

  Attributes:
    info: the data set's ``DatasetInfo``.
    num_examples: examples in the split (after ``subset``).
    batch_size: the global batch; ``local_batch_size = batch_size // process_count``.
    steps_per_epoch: ``num_examples // batch_size`` (train) or
      ``ceil(num_examples / batch_size)`` (eval); also ``len(loader)``.
    train, pipeline, split, seed.

  ``iter(loader)`` continues from the current position: forever for training;
  for evaluation until the pass is complete, after which the position returns
  to the start, so that each ``for`` loop over an evaluation loader is one full
  pass.
  """

  def __init__(
      self, dataset: sources.Dataset, split: str, *, batch_size: int, train: bool, seed: int,
      pipeline: str, subset: int | None, process_index: int, process_count: int,
      worker_count: int):
    name, info = dataset.name, dataset.info
    source = dataset.source(split, train=train, seed=seed)
    available = len(source)
    if subset is not None:
      if not isinstance(subset, int) or subset < 1:
        raise ValueError(f"subset must be a positive int or None, got {subset!r}")
    num_examples = min(available, subset) if subset else available
    if train and num_examples < batch_size:
      raise ValueError(
          f"batch_size {batch_size} is larger than the {num_examples} training examples of "
          f"{name!r} split {split!r}{f' (subset={subset})' if subset else ''}; expected "
          f"batch_size <= number of examples")
    if not num_examples:
      raise ValueError(f"data set {name!r} split {split!r} has no examples")
    self.dataset, self.info = dataset, info
    self.name, self.split, self.seed, self.train = name, split, seed, train
    self.pipeline = pipeline
    self.num_examples = num_examples
    self.batch_size = batch_size
    self.plan = BatchPlan(num_examples, batch_size, process_index, process_count, train, seed)
    self.local_batch_size = self.plan.local_batch_size
    self.steps_per_epoch = self.plan.steps_per_epoch
    self.worker_count = worker_count
    self._mean, self._std = dataset.channel_stats()
    self._step = 0
    self._source = source
    self._grain_iter = None
    self._order_cache: tuple[int, np.ndarray] | None = None
    self._extra = info.extra_features
    self._extras: dict[str, np.ndarray] = {}
    self._crops = hasattr(source, "for_epoch")
    if pipeline == "grain":
      self._dataset = self._grain_dataset()
    elif self._crops:
      # Crops change every epoch: decode once (images of any size), crop per batch.
      self._source = source.decoded(num_examples)
    else:
      self._read_into_memory(source, num_examples)

  def _read_into_memory(self, source: Any, num_examples: int) -> None:
    info, name, split = self.info, self.name, self.split
    if self._extra:
      self._images, self._labels, self._extras = decode.read_examples(
          source, range(num_examples), self._extra)
    else:
      self._images, self._labels = decode.read_arrays(source, range(num_examples))
    if len(self._labels) and not 0 <= self._labels.min() <= self._labels.max() < info.num_classes:
      raise ValueError(
          f"data set {name!r} split {split!r} has labels {int(self._labels.min())}.."
          f"{int(self._labels.max())}; expected 0..{info.num_classes - 1} for its "
          f"{info.num_classes} classes")

  def __len__(self) -> int:
    return self.steps_per_epoch

  def __repr__(self) -> str:
    return (f"Loader(name={self.name!r}, split={self.split!r}, pipeline={self.pipeline!r}, "
            f"train={self.train}, batch_size={self.batch_size}, "
            f"local_batch_size={self.local_batch_size}, num_examples={self.num_examples})")

  # --- the in-memory path -------------------------------------------------------

  def _memory_batch(self, step: int) -> Batch:
    epoch = step // self.steps_per_epoch
    if self._order_cache is None or self._order_cache[0] != epoch:
      self._order_cache = (epoch, self.plan.order(epoch))
    indices, mask = self.plan(step, self._order_cache[1])
    if self._crops:  # The Grain path's read of one batch, from the decoded images.
      return _ReadBatch(self._source, self._mean, self._std, self._extra)((indices, mask, epoch))
    extras = {k: v[indices] for k, v in self._extras.items()}
    return normalize_batch(self._images[indices], self._labels[indices], mask, self._mean,
                           self._std, extras)

  # --- the Grain path -----------------------------------------------------------

  def _grain_dataset(self):
    import grain

    dataset = grain.MapDataset.range(self.steps_per_epoch)
    if self.train:
      dataset = dataset.repeat(None)
    dataset = dataset.map_with_index(_PlanStep(self.plan))
    dataset = dataset.map(_ReadBatch(self._source, self._mean, self._std, self._extra))
    iter_dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4))
    if self.worker_count > 0:
      from absl import flags

      # Grain's worker processes read absl flags; a library must not parse argv.
      if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
      iter_dataset = iter_dataset.mp_prefetch(
          grain.MultiprocessingOptions(num_workers=self.worker_count))
    return iter_dataset

  def _grain_iterator(self):
    if self._grain_iter is None:
      self._grain_iter = iter(self._dataset)
    return self._grain_iter

  # --- iteration and state ------------------------------------------------------

  def __iter__(self) -> Iterator[Batch]:
    while self.train or self._step < self.steps_per_epoch:
      if self.pipeline == "memory":
        batch = self._memory_batch(self._step)
      else:
        batch = next(self._grain_iterator())
      self._step += 1
      yield batch
    self._step = 0
    self._grain_iter = None

  def get_state(self) -> dict[str, Any]:
    """The position: a JSON-serialisable dict for ``set_state``.

    Returns:
      ``{'pipeline', 'step', 'epoch', ...}``; ``step`` counts the batches
      already yielded; the Grain path adds the Grain iterator's own state.
    """
    state: dict[str, Any] = {
        "pipeline": self.pipeline, "step": self._step,
        "epoch": self._step // self.steps_per_epoch, "seed": self.seed,
        "num_examples": self.num_examples, "batch_size": self.batch_size,
    }
    if self.pipeline == "grain" and self._grain_iter is not None:
      state["grain"] = json.loads(json.dumps(self._grain_iter.get_state()))
    return state

  def set_state(self, state: dict[str, Any]) -> None:
    """Restores a position from ``get_state``: the next batch is the one that followed it."""
    if not isinstance(state, dict) or "step" not in state:
      raise ValueError(f"expected a state dict from Loader.get_state() with a 'step', got {state!r}")
    for key, mine in (("seed", self.seed), ("num_examples", self.num_examples),
                      ("batch_size", self.batch_size)):
      if key in state and state[key] != mine:
        raise ValueError(
            f"loader state was saved with {key}={state[key]!r}, this loader has {key}={mine!r}; "
            f"restoring it would not continue the same sequence")
    self._step = int(state["step"])
    self._grain_iter = None
    if self.pipeline == "grain":
      iterator = self._grain_iterator()
      if state.get("pipeline") == "grain" and "grain" in state:
        iterator.set_state(state["grain"])
      elif self._step and self.worker_count == 0:
        # A state without Grain's own (saved by the memory path): the position
        # of a plain Grain iterator is the index of its next element.
        iterator.set_state({"next_index": self._step})
      else:
        for _ in range(self._step):
          next(iterator)


def make_loader(
    name: str | sources.Dataset,
    split: str,
    *,
    batch_size: int,
    train: bool,
    seed: int,
    data_dir: str | None = None,
    pipeline: str = "memory",
    subset: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    worker_count: int = 0,
    image_size: int | None = None,
) -> Loader:
  """Batches of one split of a data set, sharded over processes (see module docstring).

  Args:
    name: a data set name (``'digits'``, a TFDS name, ``'folder:/path'``), or
      a ``Dataset`` (resolved once, shared by the loaders of a run; then
      ``data_dir`` and ``image_size`` are the ``Dataset``'s).
    split: split name, e.g. ``'train'``, ``'test'``.
    batch_size: the global batch over all processes; divisible by ``process_count``.
    train: shuffled infinite epochs dropping the partial batch, or one ordered,
      padded and masked pass.
    seed: shuffling seed (epoch ``e`` uses ``(seed, e)``).
    data_dir: TFDS data directory; default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    pipeline: ``'memory'`` or ``'grain'``; same batches for the same seed.
    subset: use only the first ``subset`` examples of the split.
    process_index, process_count: this process and the number of processes;
      default ``jax.process_index()`` and ``jax.process_count()``.
    worker_count: Grain prefetch worker processes (``pipeline='grain'``).
    image_size: square images of this side (``Dataset.source``): evaluation
      and fixed-size sets are resized (shorter side to ``image_size / 0.875``)
      and centre-cropped; training images of variable-size sets are random-
      resized crops of the whole image, new every epoch. Required for data
      sets of variable image size such as ``imagenet2012``.

  Returns:
    A ``Loader`` yielding ``{'image': (B / P, H, W, C) float32, 'label':
    (B / P,) int32, 'mask': (B / P,) bool}``, plus ``'target'`` ``(B / P, k)``
    float32 or ``'segmentation'`` ``(B / P, H, W)`` int32 for data sets that
    have them.
  """
  if pipeline not in PIPELINES:
    raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
  if process_index is None or process_count is None:
    import jax

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  for key, value in (("batch_size", batch_size), ("process_count", process_count)):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
      raise ValueError(f"{key} must be a positive int, got {value!r}")
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"process_index must be in [0, process_count={process_count}), got {process_index}")
  if batch_size % process_count:
    raise ValueError(
        f"global batch_size {batch_size} must be divisible by process_count {process_count} "
        f"(each process gets batch_size // process_count examples)")
  if not isinstance(worker_count, int) or worker_count < 0:
    raise ValueError(f"worker_count must be a non-negative int, got {worker_count!r}")
  if worker_count and pipeline != "grain":
    raise ValueError(f"worker_count={worker_count} needs pipeline='grain', got {pipeline!r}")
  if isinstance(name, sources.Dataset):
    dataset = name
    if (data_dir and data_dir != dataset.data_dir) or (image_size and image_size != dataset.image_size):
      raise ValueError(
          f"make_loader got a Dataset ({dataset!r}) and data_dir={data_dir!r}, "
          f"image_size={image_size!r}; give those to the Dataset")
  else:
    dataset = sources.Dataset(name, data_dir=data_dir, image_size=image_size)
  return Loader(
      dataset, split, batch_size=int(batch_size), train=bool(train), seed=int(seed),
      pipeline=pipeline, subset=subset, process_index=int(process_index),
      process_count=int(process_count), worker_count=worker_count)
