"""What a network is trained to do: classification, regression, segmentation.

A task is a small object the training and evaluation steps call; it knows

* what the batch holds (``batch_keys``, checked by ``check_batch``) and how
  many outputs the model needs (``num_outputs(info)``);
* the loss: ``loss_terms(logits, batch)`` returns ``(loss_sum, weight)`` in
  float32 over the unmasked part of a device's batch, so a step's loss is
  ``loss_sum / max(weight, 1)`` and bf16 logits never reach the reduction;
* the metrics: ``metric_sums(logits, batch)`` returns sums over the unmasked
  examples only (padded evaluation rows count zero times), each of which can
  be ``lax.psum``-ed over devices and added over steps; ``finalize(sums)``
  turns the sums of a whole split into numbers once, so split metrics are
  exact (a mean IoU from the split's confusion matrix, an R² from the split's
  sums), never means of per-batch values;
* what a summary and the plots show: ``summary_keys`` (written as
  ``test_<key>``), ``plot_keys`` and ``primary`` (the metric that says how good
  a run is, with ``higher_is_better``).

* how a training batch is augmented and mixed: ``augment_batch(fn, keys,
  batch)`` applies a per-image augmentation ``fn(key, image)`` (and, for
  segmentation, the same geometry to the class map); ``mixers()`` names the
  mixing functions the task allows (``'mixup'``, ``'cutmix'``) and
  ``mix_batch(fn, key, batch, targets, alpha)`` applies one.

``Classification`` reproduces the original steps exactly (softmax
cross-entropy on one-hot, optionally smoothed or mixed targets; ``loss_sum``,
``correct``, ``count``). ``get(name, **fields)`` builds one by name; a user
may pass any object with the same methods.

Every ``logits`` here is what the model returns: ``(B, K)`` for
classification, ``(B, k)`` for regression, ``(B, H, W, K)`` for segmentation.
A batch always holds ``'mask'`` ``(B,)`` bool (``False``: padding).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array
Batch = Mapping[str, Array]
Sums = dict[str, Array]

LOSSES = ("mse", "huber")


def _mask(batch: Batch) -> Array:
  return jnp.asarray(batch["mask"]).astype(jnp.float32)


def _check_keys(task: str, batch: Batch, keys: Iterable[str]) -> None:
  missing = [k for k in keys if k not in batch]
  if missing:
    raise ValueError(
        f"the {task} task needs batch keys {list(keys)}; the batch has {sorted(batch)}, "
        f"missing {missing} (is data.name a data set of this task?)")


def accumulate(sums: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
  """Adds per-step metric sums on the host, key by key, in float64 (integers in int64).

  Args:
    sums: host (or device) dicts from ``metric_sums``/``psum``, any number.

  Returns:
    ``{key: summed array}``; arrays keep their shape (a confusion matrix stays
    ``(K, K)``).
  """
  entries = list(sums)
  out: dict[str, np.ndarray] = {}
  for key in (entries[0] if entries else {}):
    # One stacked sum per key (numpy's pairwise summation), the same numbers
    # as summing the per-step floats of a scalar metric in one array.
    values = np.stack([np.asarray(entry[key]) for entry in entries])
    values = values.astype(np.int64 if np.issubdtype(values.dtype, np.integer) else np.float64)
    out[key] = values.sum(axis=0)
  return out


def _augment_images(augment: Any, keys: Array, batch: Batch) -> dict[str, Array]:
  return dict(batch, image=jax.vmap(augment)(keys, batch["image"]))


def _augmentations() -> Any:
  from cnnjax.data import augment as augment_lib  # noqa: PLC0415
  return augment_lib


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


TASKS = {"classification": Classification, "regression": Regression, "segmentation": Segmentation}


def from_config(config: Mapping[str, Any]) -> Classification | Regression | Segmentation:
  """The task a run config asks for (``task`` and its options; see ``cnnjax.train.config``)."""
  name = config.get("task", "classification")
  if name == "regression":
    return Regression(loss=config.get("regression_loss", "mse"),
                      huber_delta=float(config.get("huber_delta", 1.0)),
                      target_mean=float(config.get("target_mean", 0.0)),
                      target_std=float(config.get("target_std", 1.0)))
  if name == "segmentation":
    return Segmentation(ignore_label=int(config.get("ignore_label", 255)))
  if name == "classification":
    return Classification(label_smoothing=float(config.get("label_smoothing", 0.0)))
  raise ValueError(f"config task must be one of {sorted(TASKS)}, got {name!r}")


def get(name: str, **fields: Any) -> Classification | Regression | Segmentation:
  """The task called ``name`` with ``fields`` (e.g. ``get('regression', loss='huber')``).

  Raises:
    ValueError: unknown name (the message lists the known ones) or unknown field.
  """
  if name not in TASKS:
    raise ValueError(f"task must be one of {sorted(TASKS)}, got {name!r}")
  cls = TASKS[name]
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(fields) - known)
  if unknown:
    raise ValueError(f"task {name!r} has no fields {unknown}; expected some of {sorted(known)}")
  return cls(**fields)
