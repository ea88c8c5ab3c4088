"""Data: sources by name, batches for training and evaluation, augmentations on device.

Sources (``cnnjax.data.sources``)
  * ``'digits'``: scikit-learn's 1,797 real handwritten 8x8 digits as an
    embedded TFDS builder (``cnnjax.data.digits``), ``image (8, 8, 1) uint8``
    (``0..16`` scaled to ``0..255``), 10 classes, splits ``train`` 1,437 /
    ``test`` 360 (stratified, seed 0). Prepared on first use, offline, in under
    a second, atomically and under a file lock.
  * Any TFDS data set by name (``'mnist'``, ``'fashion_mnist'``, ``'cifar10'``,
    ``'cifar100'``, ``'imagenet2012'`` ...), read from ArrayRecord files with
    ``tfds.data_source``; prepare it once with
    ``python -m cnnjax.data.prepare NAME --data_dir DIR`` (``cnnjax.data.prepare``).
  * Image folders, one sub-folder per class: ``'folder:/path/to/root'``, or
    ``image_folder(root, name=..., fractions=(0.8, 0.1, 0.1), seed=0)``; splits
    ``train``/``validation``/``test``, stratified and seeded.

Contract used by ``cnnjax.train``::

  DatasetInfo(name, image_shape=(H, W, C), num_classes, splits={split: count})
      # H, W are None for variable-size data sets (imagenet2012) until resized
  dataset_info(name, *, data_dir=None, image_size=None) -> DatasetInfo
  ensure_prepared(name, *, data_dir=None) -> None
      # prepares embedded data sets; raises DatasetNotPreparedError (a
      # ValueError) with the preparing command for an unprepared TFDS data set,
      # ValueError listing the known names for an unknown one.
  Dataset(name, *, data_dir=None, image_size=None, crop_scale=(0.08, 1.0))
      # resolved once: .info, .source(split, train=, seed=), .channel_stats()
  make_loader(name | Dataset, split, *, batch_size, train, seed, data_dir=None,
              pipeline='memory' | 'grain', subset=None, process_index=None,
              process_count=None, worker_count=0, image_size=None) -> Loader
      # image_size: evaluation images resized (shorter side to image_size / 0.875)
      # and centre-cropped; training images of variable-size sets random-resized
      # crops of the whole image, new every epoch

A ``Loader`` yields ``{'image': (B, H, W, C) float32, 'label': (B,) int32,
'mask': (B,) bool}`` with ``B = batch_size // process_count`` (``batch_size``
is global). Images are ``(x / 255 - mean) / std`` with the per-channel mean and
std of the ``train`` split. ``train=True``: infinite epochs, reshuffled by
``(seed, epoch)``, partial last batch dropped, ``loader.steps_per_epoch = n //
batch_size``. ``train=False``: one ordered pass, last batch padded with
``mask=False``, ``len(loader) = ceil(n / batch_size)``. Process ``p`` gets rows
``[p * B, (p + 1) * B)`` of every global batch. ``loader.get_state()`` is a
JSON-serialisable dict; ``loader.set_state(state)`` continues with exactly the
batch that followed it. The ``memory`` and ``grain`` pipelines give the same
batches for the same seed. Details in ``cnnjax.data.loader``.

Augmentations (``cnnjax.data.augment``): pure ``f(key, image) -> image``
functions on one ``(H, W, C)`` float image that jit and vmap, batch-level
``mixup``/``cutmix``, combinators and ``augment.build(spec)`` for configs.
"""

from cnnjax.data import augment
from cnnjax.data.digits import Digits
from cnnjax.data.loader import Loader, make_loader
from cnnjax.data.sources import (
    Dataset,
    DatasetInfo,
    DatasetNotPreparedError,
    dataset_info,
    ensure_prepared,
    image_folder,
    registered_names,
)

__all__ = [
    "Dataset",
    "DatasetInfo",
    "DatasetNotPreparedError",
    "Digits",
    "Loader",
    "augment",
    "dataset_info",
    "ensure_prepared",
    "image_folder",
    "make_loader",
    "registered_names",
]
