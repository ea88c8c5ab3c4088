"""Classification: softmax cross-entropy on integer labels; accuracy."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnjax.train.tasks.common import (
    Array,
    Batch,
    Sums,
    _augment_images,
    _augmentations,
    _check_keys,
    _mask,
)


@dataclasses.dataclass(frozen=True)
class Classification:
  """Softmax cross-entropy on integer labels; accuracy.

  Batch: ``'image'``, ``'label'`` int ``(B,)``, ``'mask'``. Logits ``(B, K)``.

  Attributes:
    label_smoothing: ``optax.smooth_labels`` factor in ``[0, 1)``.
  """

  label_smoothing: float = 0.0

  name = "classification"
  batch_keys = ("image", "label", "mask")
  summary_keys = ("loss", "accuracy")
  plot_keys = ("loss", "accuracy")
  primary = "accuracy"
  higher_is_better = True

  def check_batch(self, batch: Batch) -> None:
    """Raises ``ValueError`` naming the missing keys."""
    _check_keys(self.name, batch, self.batch_keys)

  def num_outputs(self, info: Any) -> int:
    """Logits the model needs: the data set's ``num_classes``."""
    return int(info.num_classes)

  def targets(self, batch: Batch, num_classes: int) -> Array:
    """One-hot (smoothed) targets ``(B, K)`` float32, the input of mixup/cutmix."""
    targets = jax.nn.one_hot(batch["label"], num_classes, dtype=jnp.float32)
    if self.label_smoothing > 0:
      targets = optax.smooth_labels(targets, self.label_smoothing)
    return targets

  def augment_batch(self, augment: Any, keys: Array, batch: Batch) -> dict[str, Array]:
    """``batch`` with ``augment(key, image)`` applied to every image ``(H, W, C)``; ``keys`` ``(B,)``."""
    return _augment_images(augment, keys, batch)

  def mixers(self) -> dict[str, Any]:
    """``{'mixup': fn, 'cutmix': fn}``, ``fn(key, images, soft_targets, alpha)``."""
    augment_lib = _augmentations()
    return {"mixup": augment_lib.mixup, "cutmix": augment_lib.cutmix}

  def mix_batch(self, mix: Any, key: Array, batch: Batch, targets: Array,
                alpha: float) -> tuple[dict[str, Array], Array]:
    """Images and soft targets ``(B, K)`` mixed by ``mix`` (one of ``mixers()``)."""
    images, targets = mix(key, batch["image"], targets, alpha)
    return dict(batch, image=images), targets

  def per_example_loss(self, logits: Array, targets: Array) -> Array:
    """Softmax cross-entropy ``(B,)`` float32 against probabilities ``targets`` ``(B, K)``."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)

  def loss_terms(self, logits: Array, batch: Batch, targets: Array | None = None) -> tuple[Array, Array]:
    """``(loss_sum, count)`` over unmasked examples; ``targets`` default ``self.targets``.

    Args:
      logits: ``(B, K)``.
      batch: with ``'label'`` and ``'mask'``.
      targets: ``(B, K)`` probabilities (mixed or smoothed), or None.
    """
    if targets is None:
      targets = self.targets(batch, logits.shape[-1])
    mask = _mask(batch)
    return jnp.sum(self.per_example_loss(logits, targets) * mask), jnp.sum(mask)

  def metric_sums(self, logits: Array, batch: Batch, targets: Array | None = None) -> Sums:
    """``loss_sum``, ``correct``, ``count`` (float32 scalars) over unmasked examples.

    As the original evaluation step: the loss is against one-hot targets
    (``label_smoothing`` applied only where the caller passes ``targets``).
    """
    if targets is None:
      targets = jax.nn.one_hot(batch["label"], logits.shape[-1], dtype=jnp.float32)
    mask = _mask(batch)
    correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(self.per_example_loss(logits, targets) * mask),
        "correct": jnp.sum(correct * mask),
        "count": jnp.sum(mask),
    }

  def finalize(self, sums: Mapping[str, Any]) -> dict[str, float]:
    """``loss``, ``accuracy``, ``count`` from a split's sums."""
    count = float(np.asarray(sums["count"]))
    return {"loss": float(np.asarray(sums["loss_sum"])) / max(count, 1.0),
            "accuracy": float(np.asarray(sums["correct"])) / max(count, 1.0),
            "count": count}
