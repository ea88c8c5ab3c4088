"""Tasks: exact losses and metrics on small hand-made cases, padding, bf16, split-exact metrics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import steps, tasks


def _batch(**kw):
  kw.setdefault("mask", np.ones(len(next(iter(kw.values()))), bool))
  return {k: jnp.asarray(v) for k, v in kw.items()}


# --- classification -----------------------------------------------------------------

def test_classification_matches_the_original_steps_bit_for_bit():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  batch = _batch(label=np.array([0, 1, 2, 3, 1, 0]), mask=np.array([1, 1, 1, 1, 0, 0], bool))
  mask = batch["mask"].astype(jnp.float32)
  per_example = steps.cross_entropy(logits, jax.nn.one_hot(batch["label"], 4))
  # The sums of the steps before tasks existed, written out.
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  expected = {"loss_sum": jnp.sum(per_example * mask), "correct": jnp.sum(correct * mask),
              "count": jnp.sum(mask)}
  got = tasks.Classification().metric_sums(logits, batch)
  for key in ("loss_sum", "correct", "count"):
    assert np.asarray(got[key]) == np.asarray(expected[key]), key
  assert tasks.Classification().finalize(got) == steps.summarize(
      {k: np.asarray(v) for k, v in expected.items()})


def test_classification_hand_made_values_and_smoothing():
  # Logits (0, 0) give log 2 for either label; (log 3, 0) gives p = 3/4 for class 0.
  logits = jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]])
  batch = _batch(label=np.array([1, 0]))
  sums = tasks.Classification().metric_sums(logits, batch)
  assert float(sums["loss_sum"]) == pytest.approx(math.log(2) - math.log(0.75), rel=1e-6)
  assert float(sums["correct"]) == 1.0  # argmax of (0, 0) is 0, label 1
  smoothed = tasks.Classification(label_smoothing=0.2)
  targets = smoothed.targets(batch, 2)
  np.testing.assert_allclose(targets, [[0.1, 0.9], [0.9, 0.1]], rtol=1e-6)
  loss_sum, count = smoothed.loss_terms(logits, batch)
  expected = math.log(2) - (0.9 * math.log(0.75) + 0.1 * math.log(0.25))
  assert float(loss_sum) == pytest.approx(expected, rel=1e-6) and float(count) == 2


# --- regression ---------------------------------------------------------------------

def test_regression_exact_metrics_and_padding():
  outputs = jnp.array([[1.0], [3.0], [0.0], [100.0]])
  batch = _batch(target=np.array([[2.0], [1.0], [3.0], [-50.0]]), mask=np.array([1, 1, 1, 0], bool))
  task = tasks.Regression()
  sums = task.metric_sums(outputs, batch)
  # Errors -1, 2, -3 (the padded row counts zero times).
  assert float(sums["loss_sum"]) == 14.0 and float(sums["count"]) == 3.0
  out = task.finalize(sums)
  assert out["mae"] == 2.0 and out["loss"] == pytest.approx(14 / 3)
  assert out["rmse"] == pytest.approx(math.sqrt(14 / 3))
  # Targets 2, 1, 3: mean 2, SST = 2; R² = 1 - 14 / 2.
  assert out["r2"] == pytest.approx(-6.0)


def test_regression_standardisation_huber_and_shape_errors():
  task = tasks.Regression(loss="huber", huber_delta=1.0, target_mean=10.0, target_std=2.0)
  batch = _batch(target=np.array([[10.0, 14.0]]))
  outputs = jnp.array([[0.5, 0.0]])  # predictions 11 and 10; standardised errors 0.5 and -2
  assert float(task.per_example_loss(outputs, batch)[0]) == pytest.approx((0.125 + 1.5) / 2)
  np.testing.assert_allclose(task.predictions(outputs), [[11.0, 10.0]])
  sums = task.metric_sums(outputs, batch)
  np.testing.assert_allclose(sums["abs_error"], [1.0, 4.0])
  with pytest.raises(ValueError, match=r"num_outputs=2"):
    task.loss_terms(jnp.zeros((1, 3)), batch)
  with pytest.raises(ValueError, match="loss must be one of"):
    tasks.Regression(loss="l1")


def test_regression_split_metrics_are_exact_over_batches():
  rng = np.random.default_rng(1)
  y = rng.normal(size=(10, 2)) * 5 + 3
  p = y + rng.normal(size=(10, 2))
  task = tasks.Regression()
  parts = [task.metric_sums(jnp.asarray(p[s], jnp.float32), _batch(target=y[s]))
           for s in (slice(0, 3), slice(3, 10))]
  out = task.finalize(tasks.accumulate(parts))
  # The definitions in float64 over all ten rows at once (scikit-learn's uniform average).
  r2 = np.mean(1 - ((p - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
  # float32 sums of 20 terms of magnitude ~10: relative error well under 1e-5.
  assert out["mae"] == pytest.approx(np.abs(p - y).mean(), rel=1e-5)
  assert out["rmse"] == pytest.approx(math.sqrt(((p - y) ** 2).mean()), rel=1e-5)
  assert out["r2"] == pytest.approx(r2, rel=1e-4)


# --- segmentation -------------------------------------------------------------------

def test_segmentation_hand_made_confusion_iou_and_ignore():
  k = 3
  labels = np.array([[[0, 1], [2, 255]], [[1, 1], [0, 2]]])
  predicted = np.array([[[0, 1], [1, 0]], [[2, 2], [2, 2]]])
  logits = jnp.asarray(jax.nn.one_hot(predicted, k) * 4.0)
  task = tasks.Segmentation(ignore_label=255)
  # Second example padded: only the three labelled pixels of the first count.
  sums = task.metric_sums(logits, _batch(segmentation=labels, mask=np.array([1, 0], bool)))
  np.testing.assert_array_equal(sums["confusion"], [[1, 0, 0], [0, 1, 0], [0, 1, 0]])
  assert float(sums["pixels"]) == 3 and float(sums["correct"]) == 2 and float(sums["count"]) == 1
  out = task.finalize(sums)
  assert out["pixel_accuracy"] == pytest.approx(2 / 3)
  assert out["mean_iou"] == pytest.approx((1 + 1 / 2 + 0) / 3)
  # Cross-entropy of a logit margin of 4 against 2 others: log(1 + 2 e^-4) when right.
  right, wrong = math.log(1 + 2 * math.exp(-4)), 4 + math.log(1 + 2 * math.exp(-4))
  assert out["loss"] == pytest.approx((2 * right + wrong) / 3, rel=1e-6)


def test_segmentation_iou_is_from_the_split_confusion_not_a_mean_of_batches():
  k = 2
  task = tasks.Segmentation()
  a = task.metric_sums(jax.nn.one_hot(jnp.array([[[0, 0]]]), k), _batch(segmentation=np.array([[[0, 0]]])))
  b = task.metric_sums(jax.nn.one_hot(jnp.array([[[0, 1]]]), k), _batch(segmentation=np.array([[[1, 1]]])))
  split = task.finalize(tasks.accumulate([a, b]))["mean_iou"]
  # Split confusion [[2, 0], [1, 1]]: IoU 2/3 and 1/2. Batch means would give (1 + 1/4) / 2.
  assert split == pytest.approx((2 / 3 + 1 / 2) / 2)
  assert split != pytest.approx((1 + (0 + 0.5) / 2) / 2)


def test_bf16_logits_keep_float32_losses():
  logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.bfloat16)
  batch = _batch(segmentation=np.zeros((2, 4, 4), np.int32))
  loss_sum, count = tasks.Segmentation().loss_terms(logits, batch)
  assert loss_sum.dtype == jnp.float32 and count.dtype == jnp.float32
  expected = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), jnp.zeros((2, 4, 4), jnp.int32)).sum()
  assert float(loss_sum) == pytest.approx(float(expected), rel=1e-6)
  reg_loss, _ = tasks.Regression().loss_terms(jnp.ones((2, 1), jnp.bfloat16), _batch(target=np.zeros((2, 1))))
  assert reg_loss.dtype == jnp.float32


def test_sums_are_psummable_under_a_named_axis():
  task = tasks.Segmentation()
  logits = jax.nn.one_hot(jnp.array([[[[0, 1]]], [[[1, 1]]]]), 2)  # two devices, one example each
  labels = jnp.array([[[[0, 1]]], [[[0, 1]]]])
  mask = jnp.ones((2, 1), bool)
  summed = jax.vmap(lambda l, s, m: jax.lax.psum(task.metric_sums(l, {"segmentation": s, "mask": m}), "d"),
                    axis_name="d")(logits, labels, mask)
  # Device 0 predicts (0, 1) for labels (0, 1), device 1 predicts (1, 1).
  np.testing.assert_array_equal(summed["confusion"][0], [[1, 1], [0, 2]])


def test_errors_name_what_is_missing():
  with pytest.raises(ValueError, match=r"missing \['segmentation'\]"):
    tasks.Segmentation().check_batch({"image": np.zeros((1, 2, 2, 1)), "mask": np.ones(1, bool)})
  with pytest.raises(ValueError, match=r"\(B, H, W, K\)"):
    tasks.Segmentation().loss_terms(jnp.zeros((1, 2, 3)), _batch(segmentation=np.zeros((1, 2, 2))))
  with pytest.raises(ValueError, match="task must be one of"):
    tasks.get("detection")
  with pytest.raises(ValueError, match=r"no fields \['ignore'\]"):
    tasks.get("segmentation", ignore=3)
  assert tasks.get("regression", loss="huber").loss == "huber"


def test_config_fields_build_the_task_and_refuse_mixing_that_has_no_meaning():
  from cnnjax.train import config as config_lib

  c = config_lib.base_config()
  assert tasks.from_config(c) == tasks.Classification()
  c.task, c.regression_loss, c.target_std = "regression", "huber", 26.0
  assert tasks.from_config(c) == tasks.Regression(loss="huber", target_std=26.0)
  c.task, c.ignore_label = "segmentation", 0
  assert tasks.from_config(c) == tasks.Segmentation(ignore_label=0)
  c.mixup_alpha = 0.2
  with pytest.raises(ValueError, match="mixup blends two images"):
    config_lib.validate(c)
  c.mixup_alpha, c.task = 0.0, "detection"
  with pytest.raises(ValueError, match=r"config task='detection' is not one of"):
    config_lib.validate(c)
  c.task, c.cutmix_alpha = "regression", 1.0
  with pytest.raises(ValueError, match="no single target"):
    config_lib.validate(c)
