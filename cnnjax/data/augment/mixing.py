"""Batch mixing: ``mixup`` and ``cutmix`` blend examples of a batch and their one-hot labels.

They act on a batch ``(N, H, W, C)`` and its labels ``(N, K)`` and return soft
labels; ``cutmix_segmentation`` pastes the same box into the images and their
class maps ``(N, H, W)`` (mixup is refused for class maps: a pixel would hold
two classes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnnjax.data.augment.ops_image import Array, _check_batch


# --- batch-level mixing -------------------------------------------------------------

def _check_labels(images: Array, labels: Array) -> None:
  _check_batch(images)
  if hasattr(labels, "shape") and labels.ndim == 3 and labels.shape == images.shape[:3]:
    raise ValueError(
        f"got a segmentation map {tuple(labels.shape)} as labels: mixup blends two images, so "
        f"a pixel would hold two classes; it is refused for segmentation. CutMix keeps one "
        f"class per pixel: use cutmix_segmentation(key, images, segmentations, alpha)")
  if not hasattr(labels, "shape") or labels.ndim != 2 or labels.shape[0] != images.shape[0]:
    raise ValueError(
        f"labels must be one-hot (N, num_classes) with N={images.shape[0]}, got shape "
        f"{tuple(getattr(labels, 'shape', ()))}; use jax.nn.one_hot(labels, num_classes)")


def mixup(key: Array, images: Array, labels_onehot: Array, alpha: float = 0.2) -> tuple[Array, Array]:
  """mixup (Zhang et al., 2018): ``lam * x + (1 - lam) * x[perm]``, ``lam ~ Beta(alpha, alpha)``.

  Args:
    key: PRNG key.
    images: ``(N, H, W, C)``.
    labels_onehot: ``(N, K)``.
    alpha: Beta parameter, ``> 0``.

  Returns:
    ``(images (N, H, W, C), soft labels (N, K))``; each soft label row sums to
    what the one-hot row summed to (1).
  """
  _check_labels(images, labels_onehot)
  if alpha <= 0:
    raise ValueError(f"alpha must be positive, got {alpha}")
  key_lam, key_perm = jax.random.split(key)
  lam = jax.random.beta(key_lam, alpha, alpha)
  perm = jax.random.permutation(key_perm, images.shape[0])
  mixed = lam * images + (1 - lam) * images[perm]
  labels = lam * labels_onehot + (1 - lam) * labels_onehot[perm]
  return mixed.astype(images.dtype), labels.astype(labels_onehot.dtype)


def cutmix(key: Array, images: Array, labels_onehot: Array, alpha: float = 1.0) -> tuple[Array, Array]:
  """CutMix (Yun et al., 2019): paste a box from a permuted batch; labels by area.

  The box has area fraction ``1 - lam``, ``lam ~ Beta(alpha, alpha)``, centred
  uniformly and clipped to the image; the label weight is the actual area kept.

  Returns:
    ``(images (N, H, W, C), soft labels (N, K))``.
  """
  _check_labels(images, labels_onehot)
  perm, box, kept = _cutmix_box(key, images.shape, alpha)
  mixed = jnp.where(box, images[perm], images)
  labels = kept * labels_onehot + (1 - kept) * labels_onehot[perm]
  return mixed, labels.astype(labels_onehot.dtype)


def _cutmix_box(key: Array, shape: tuple[int, ...], alpha: float):
  """CutMix's draw for a batch of ``shape`` ``(N, H, W, C)``: ``(perm, box (1, H, W, 1), kept)``."""
  if alpha <= 0:
    raise ValueError(f"alpha must be positive, got {alpha}")
  _, height, width, _ = shape
  key_lam, key_perm, key_y, key_x = jax.random.split(key, 4)
  lam = jax.random.beta(key_lam, alpha, alpha)
  perm = jax.random.permutation(key_perm, shape[0])
  cut = jnp.sqrt(1.0 - lam)
  cut_h, cut_w = jnp.round(height * cut), jnp.round(width * cut)
  cy = jax.random.randint(key_y, (), 0, height)
  cx = jax.random.randint(key_x, (), 0, width)
  y0 = jnp.clip(cy - cut_h // 2, 0, height)
  y1 = jnp.clip(cy + cut_h // 2, 0, height)
  x0 = jnp.clip(cx - cut_w // 2, 0, width)
  x1 = jnp.clip(cx + cut_w // 2, 0, width)
  rows = jnp.arange(height)[None, :, None, None]
  cols = jnp.arange(width)[None, None, :, None]
  box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
  kept = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
  return perm, box, kept


def cutmix_segmentation(key: Array, images: Array, segmentations: Array, alpha: float = 1.0
                        ) -> tuple[Array, Array]:
  """CutMix for dense labels: the box pasted into the image is pasted into its class map too.

  The same draw as ``cutmix`` with the same key (same box, same partner);
  every pixel keeps exactly one class, so no soft labels are needed.

  Args:
    key: PRNG key.
    images: ``(N, H, W, C)``.
    segmentations: ``(N, H, W)`` int class maps.
    alpha: Beta parameter, ``> 0``.

  Returns:
    ``(images (N, H, W, C), segmentations (N, H, W))``.
  """
  _check_batch(images)
  if not hasattr(segmentations, "shape") or tuple(segmentations.shape) != tuple(images.shape[:3]):
    raise ValueError(
        f"segmentations must be (N, H, W) = {tuple(images.shape[:3])} like the images "
        f"{tuple(images.shape)}, got shape {tuple(getattr(segmentations, 'shape', ()))}")
  perm, box, _ = _cutmix_box(key, images.shape, alpha)
  mixed = jnp.where(box, images[perm], images)
  return mixed, jnp.where(box[..., 0], segmentations[perm], segmentations)
