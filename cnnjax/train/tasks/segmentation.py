"""Segmentation: per-pixel cross-entropy with an ignore label; pixel accuracy and mean IoU."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnjax.train.tasks.common import Array, Batch, Sums, _augmentations, _check_keys, _mask


@dataclasses.dataclass(frozen=True)
class Segmentation:
  """Per-pixel softmax cross-entropy with an ignore label; pixel accuracy and mean IoU.

  Batch: ``'image'``, ``'segmentation'`` int ``(B, H, W)``, ``'mask'``.
  Logits ``(B, H, W, K)``. A pixel counts when its example is unmasked and its
  label is not ``ignore_label``.

  * ``loss``: the mean cross-entropy over the counted pixels (of the batch in
    a step, of the split at evaluation).
  * ``pixel_accuracy``: correct counted pixels over counted pixels.
  * ``mean_iou``: from the split's confusion matrix ``C`` (rows: true class,
    columns: predicted), ``IoU_k = C_kk / (sum_j C_kj + sum_j C_jk - C_kk)``,
    averaged over the classes that occur in the labels or the predictions
    (a class absent from both has no IoU).

  Attributes:
    num_classes: ``K``; 0 takes it from the data set.
    ignore_label: label of pixels that count nowhere (e.g. 255, or -1).
  """

  num_classes: int = 0
  ignore_label: int = 255

  name = "segmentation"
  batch_keys = ("image", "segmentation", "mask")
  summary_keys = ("loss", "pixel_accuracy", "mean_iou")
  plot_keys = ("loss", "pixel_accuracy", "mean_iou")
  primary = "mean_iou"
  higher_is_better = True

  def check_batch(self, batch: Batch) -> None:
    """Raises ``ValueError`` for missing keys or a map that is not ``(B, H, W)`` like the image."""
    _check_keys(self.name, batch, self.batch_keys)
    seg, image = tuple(batch["segmentation"].shape), tuple(batch["image"].shape)
    if len(seg) != 3 or seg != image[:3]:
      raise ValueError(
          f"segmentation maps must be int (B, H, W) matching the images (B, H, W, C) = "
          f"{image}, got shape {seg}")

  def num_outputs(self, info: Any) -> int:
    """Logits per pixel: ``num_classes`` or the data set's ``num_classes``."""
    if not self.num_classes and not getattr(info, "segmentation", False):
      raise ValueError(
          f"the segmentation task needs a data set with a 'segmentation' feature; "
          f"{getattr(info, 'name', info)!r} has none")
    return self.num_classes or int(info.num_classes)

  def augment_batch(self, augment: Any, keys: Array, batch: Batch) -> dict[str, Array]:
    """Images and class maps ``(B, H, W)`` moved together (``augment.with_segmentation``).

    Pixels brought in from outside the image get ``ignore_label``.
    """
    paired = _augmentations().with_segmentation(augment, self.ignore_label)
    images, maps = jax.vmap(paired)(keys, batch["image"], batch["segmentation"])
    return dict(batch, image=images, segmentation=maps)

  def mixers(self) -> dict[str, Any]:
    """``{'cutmix': augment.cutmix_segmentation}``; mixup would give a pixel two classes."""
    return {"cutmix": _augmentations().cutmix_segmentation}

  def mix_batch(self, mix: Any, key: Array, batch: Batch, targets: Any,
                alpha: float) -> tuple[dict[str, Array], Any]:
    """Images and class maps mixed by ``mix(key, images, maps, alpha)``; ``targets`` passes through."""
    images, maps = mix(key, batch["image"], batch["segmentation"], alpha)
    return dict(batch, image=images, segmentation=maps), targets

  def _valid(self, logits: Array, batch: Batch) -> tuple[Array, Array]:
    labels = jnp.asarray(batch["segmentation"])
    if logits.ndim != 4 or logits.shape[:3] != labels.shape:
      raise ValueError(
          f"segmentation logits must be (B, H, W, K) over the label maps (B, H, W) = "
          f"{tuple(labels.shape)}, got {tuple(logits.shape)}")
    valid = (labels != self.ignore_label) & jnp.asarray(batch["mask"]).astype(bool)[:, None, None]
    return labels, valid

  def pixel_losses(self, logits: Array, batch: Batch) -> tuple[Array, Array]:
    """``(losses (B, H, W) float32, valid (B, H, W) bool)``; ignored pixels have loss 0."""
    labels, valid = self._valid(logits, batch)
    safe = jnp.where(valid, labels, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
    return jnp.where(valid, losses, 0.0), valid

  def loss_terms(self, logits: Array, batch: Batch) -> tuple[Array, Array]:
    """``(loss_sum, counted pixels)``, float32."""
    losses, valid = self.pixel_losses(logits, batch)
    return jnp.sum(losses), jnp.sum(valid.astype(jnp.float32))

  def metric_sums(self, logits: Array, batch: Batch) -> Sums:
    """``loss_sum``, ``pixels``, ``correct`` (float32), ``count`` (examples) and
    ``confusion`` ``(K, K)`` int32 (rows true, columns predicted)."""
    losses, valid = self.pixel_losses(logits, batch)
    labels = jnp.asarray(batch["segmentation"])
    k = logits.shape[-1]
    predicted = jnp.argmax(logits, axis=-1)
    index = jnp.where(valid, jnp.clip(labels, 0, k - 1) * k + predicted, 0).reshape(-1)
    confusion = jnp.zeros((k * k,), jnp.int32).at[index].add(valid.reshape(-1).astype(jnp.int32))
    return {
        "loss_sum": jnp.sum(losses),
        "pixels": jnp.sum(valid.astype(jnp.float32)),
        "correct": jnp.sum(((predicted == labels) & valid).astype(jnp.float32)),
        "count": jnp.sum(_mask(batch)),
        "confusion": confusion.reshape(k, k),
    }

  def finalize(self, sums: Mapping[str, Any]) -> dict[str, float]:
    """``loss``, ``pixel_accuracy``, ``mean_iou``, ``count`` from a split's sums."""
    pixels = max(float(np.asarray(sums["pixels"])), 1.0)
    return {
        "loss": float(np.asarray(sums["loss_sum"])) / pixels,
        "pixel_accuracy": float(np.asarray(sums["correct"])) / pixels,
        "mean_iou": mean_iou(np.asarray(sums["confusion"])),
        "count": float(np.asarray(sums["count"])),
    }


def mean_iou(confusion: np.ndarray) -> float:
  """Mean intersection over union of a confusion matrix ``(K, K)`` (rows true, columns predicted).

  Classes with an empty union (absent from labels and predictions) are left
  out of the mean; an all-empty matrix gives NaN.
  """
  confusion = np.asarray(confusion, np.float64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f"confusion must be a square (K, K) matrix, got shape {confusion.shape}")
  inter = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - inter
  present = union > 0
  if not present.any():
    return float("nan")
  return float(np.mean(inter[present] / union[present]))
