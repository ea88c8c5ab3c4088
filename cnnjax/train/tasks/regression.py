"""Regression: MSE or Huber loss on standardised targets; MAE, RMSE and R² in target units."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from cnnjax.train.tasks.common import (
    Array,
    Batch,
    Sums,
    LOSSES,
    _augment_images,
    _check_keys,
    _mask,
)


@dataclasses.dataclass(frozen=True)
class Regression:
  """``k`` real targets per image: MSE or Huber loss; MAE, RMSE and R².

  Batch: ``'image'``, ``'target'`` float ``(B, k)``, ``'mask'``. Outputs
  ``(B, k)``, read as standardised targets: the prediction in the data's
  units is ``outputs * target_std + target_mean``, so a net whose last layer
  starts near zero starts near the mean, and the loss is of order one whatever
  the units. Metrics are in the data's units.

  * ``loss``: mean over examples of the mean over the ``k`` outputs of the
    squared error (``'mse'``) or the Huber loss with ``huber_delta``, both on
    the standardised scale.
  * ``mae``, ``rmse``: over every example and output of the split.
  * ``r2``: ``1 - SSE / SST`` per output over the split, averaged over the
    outputs (scikit-learn's ``'uniform_average'``), from accumulated sums of
    ``y``, ``y²`` and squared errors.

  Attributes:
    num_targets: ``k``; 0 takes it from the data set (``info.num_targets``).
    loss: ``'mse'`` or ``'huber'``.
    huber_delta: Huber's threshold (standardised units).
    target_mean, target_std: the standardisation of the targets.
  """

  num_targets: int = 0
  loss: str = "mse"
  huber_delta: float = 1.0
  target_mean: float = 0.0
  target_std: float = 1.0

  name = "regression"
  batch_keys = ("image", "target", "mask")
  summary_keys = ("loss", "mae", "rmse", "r2")
  plot_keys = ("loss", "mae")
  primary = "mae"
  higher_is_better = False

  def __post_init__(self):
    if self.loss not in LOSSES:
      raise ValueError(f"regression loss must be one of {LOSSES}, got {self.loss!r}")
    if not self.target_std > 0:
      raise ValueError(f"target_std must be positive, got {self.target_std!r}")
    if not self.huber_delta > 0:
      raise ValueError(f"huber_delta must be positive, got {self.huber_delta!r}")

  def check_batch(self, batch: Batch) -> None:
    """Raises ``ValueError`` for missing keys or a target that is not ``(B, k)``."""
    _check_keys(self.name, batch, self.batch_keys)
    shape = tuple(batch["target"].shape)
    if len(shape) != 2 or (self.num_targets and shape[1] != self.num_targets):
      raise ValueError(
          f"regression targets must be float (B, k) with k={self.num_targets or 'k'}, got "
          f"shape {shape}")

  def num_outputs(self, info: Any) -> int:
    """Outputs the model needs: ``num_targets`` or the data set's ``num_targets``."""
    k = self.num_targets or int(getattr(info, "num_targets", 0))
    if not k:
      raise ValueError(
          f"the regression task needs a data set with a 'target' feature; "
          f"{getattr(info, 'name', info)!r} has none (num_targets=0)")
    return k

  def augment_batch(self, augment: Any, keys: Array, batch: Batch) -> dict[str, Array]:
    """``batch`` with ``augment(key, image)`` applied to every image; targets unchanged.

    Geometric augmentations that change what is regressed (a rotation of a
    rotation angle) are the config's to leave out.
    """
    return _augment_images(augment, keys, batch)

  def mixers(self) -> dict[str, Any]:
    """None: a mixed image has no single target."""
    return {}

  def mix_batch(self, mix: Any, key: Array, batch: Batch, targets: Any,
                alpha: float) -> tuple[dict[str, Array], Any]:
    """Refused (``ValueError``): a mixed image has no single target."""
    raise ValueError("the regression task mixes no images: set mixup_alpha=0 and cutmix_alpha=0")

  def _check(self, outputs: Array, batch: Batch) -> tuple[Array, Array]:
    target = jnp.asarray(batch["target"], jnp.float32)
    if outputs.shape != target.shape:
      raise ValueError(
          f"regression outputs {tuple(outputs.shape)} do not match the targets "
          f"{tuple(target.shape)}; build the model with num_outputs={target.shape[-1]}")
    return outputs.astype(jnp.float32), target

  def predictions(self, outputs: Array) -> Array:
    """Model outputs ``(B, k)`` -> predictions in the data's units, float32."""
    return outputs.astype(jnp.float32) * self.target_std + self.target_mean

  def per_example_loss(self, outputs: Array, batch: Batch) -> Array:
    """``(B,)`` float32: mean over outputs of the squared error or Huber loss (standardised)."""
    outputs, target = self._check(outputs, batch)
    error = outputs - (target - self.target_mean) / self.target_std
    if self.loss == "mse":
      per_output = jnp.square(error)
    else:
      per_output = optax.huber_loss(error, delta=self.huber_delta)
    return jnp.mean(per_output, axis=-1)

  def loss_terms(self, outputs: Array, batch: Batch) -> tuple[Array, Array]:
    """``(loss_sum, count)`` over unmasked examples."""
    mask = _mask(batch)
    return jnp.sum(self.per_example_loss(outputs, batch) * mask), jnp.sum(mask)

  def metric_sums(self, outputs: Array, batch: Batch) -> Sums:
    """Sums over unmasked examples: ``loss_sum``, ``count``; per output ``(k,)``:
    ``abs_error``, ``sq_error``, ``target_sum``, ``target_sq``."""
    mask = _mask(batch)
    _, target = self._check(outputs, batch)
    error = self.predictions(outputs) - target
    m = mask[:, None]
    return {
        "loss_sum": jnp.sum(self.per_example_loss(outputs, batch) * mask),
        "count": jnp.sum(mask),
        "abs_error": jnp.sum(jnp.abs(error) * m, axis=0),
        "sq_error": jnp.sum(jnp.square(error) * m, axis=0),
        "target_sum": jnp.sum(target * m, axis=0),
        "target_sq": jnp.sum(jnp.square(target) * m, axis=0),
    }

  def finalize(self, sums: Mapping[str, Any]) -> dict[str, float]:
    """``loss``, ``mae``, ``rmse``, ``r2``, ``count`` from a split's sums (float64 on the host)."""
    count = float(np.asarray(sums["count"]))
    n = max(count, 1.0)
    abs_error = np.asarray(sums["abs_error"], np.float64)
    sq_error = np.asarray(sums["sq_error"], np.float64)
    k = abs_error.size
    total = np.asarray(sums["target_sq"], np.float64) - np.square(
        np.asarray(sums["target_sum"], np.float64)) / n
    with np.errstate(divide="ignore", invalid="ignore"):
      # A constant target has SST = 0: R² is undefined there (NaN), as in scikit-learn's raw form.
      r2 = np.where(total > 0, 1.0 - sq_error / np.where(total > 0, total, 1.0), np.nan)
    return {
        "loss": float(np.asarray(sums["loss_sum"])) / n,
        "mae": float(abs_error.sum() / (n * k)),
        "rmse": float(math.sqrt(sq_error.sum() / (n * k))),
        "r2": float(np.mean(r2)),
        "count": count,
    }
