"""Loading a backbone under a new head, freezing it, fine-tuning it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from cnnjax import inspect as ci
from cnnjax import models
from cnnjax.train import fit


def _init(model, seed):
  return jax.device_get(model.init(jax.random.key(seed), jnp.zeros((1, 8, 8, 1)), train=False))


def _flat(variables):
  return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables).items()}


@pytest.fixture(scope="module")
def setup():
  trained_model = models.create("digits_cnn", num_classes=10, width=4)
  model = models.create("digits_cnn", num_classes=3, width=4)
  trained = _init(trained_model, 0)
  # Non-trivial statistics, as after training.
  rng = np.random.default_rng(1)
  trained["batch_stats"] = jax.tree_util.tree_map_with_path(
      lambda path, s: (rng.uniform(0.5, 1.5, s.shape) if path[-1].key == "var"
                       else rng.normal(0, 0.1, s.shape)).astype(np.float32),
      trained["batch_stats"])
  rng = np.random.default_rng(0)
  x = rng.normal(size=(24, 8, 8, 1)).astype(np.float32)
  y = (np.arange(24) % 3).astype(np.int32)
  return model, ci.load_backbone(_init(model, 1), trained), trained, x, y


def test_load_backbone_takes_all_but_the_head(setup):
  model, variables, trained, _, _ = setup
  fresh = _flat(_init(model, 1))
  new, old = _flat(variables), _flat(trained)
  assert new.keys() == fresh.keys()
  for key, value in new.items():
    expected = fresh[key] if key.startswith("params/head/") else old[key]
    np.testing.assert_array_equal(value, expected)
  assert new["params/head/kernel"].shape == (16, 3)


def test_load_backbone_errors_name_the_variable():
  small = _init(models.create("digits_cnn", num_classes=3, width=4), 0)
  wide = _init(models.create("digits_cnn", num_classes=3, width=8), 0)
  with pytest.raises(ValueError, match=r"params/conv1/conv/kernel has shape \(3, 3, 1, 8\).*"
                                       r"\(3, 3, 1, 4\)"):
    ci.load_backbone(small, wide)
  lenet = _init(models.create("lenet5", num_classes=3, padding="SAME"), 0)
  with pytest.raises(ValueError, match=r"backbones differ in 'params'.*conv1/conv/kernel"):
    ci.load_backbone(small, lenet)


def test_backbone_labels(setup):
  _, variables, _, _, _ = setup
  labels = {"/".join(k): v for k, v in
            traverse_util.flatten_dict(ci.backbone_labels(variables["params"])).items()}
  assert {k for k, v in labels.items() if v == "head"} == {"head/bias", "head/kernel"}
  assert set(labels.values()) == {"head", "backbone"}
  with pytest.raises(ValueError, match="no parameter lies under head='classifier'"):
    ci.backbone_labels(variables["params"], head="classifier")


def test_frozen_backbone_is_bit_identical_and_the_head_learns(setup):
  model, variables, _, x, y = setup
  tx = ci.transfer_optimizer(optax.sgd(0.5, momentum=0.9))
  out, losses = fit(model, variables, tx, x, y, steps=4, batch_size=8,
                       freeze_statistics=True)
  before, after = _flat(variables), _flat(out)
  assert before.keys() == after.keys()
  for key in before:
    if key.startswith("params/head/"):
      assert not np.array_equal(before[key], after[key]), key
    else:  # Frozen parameters and BatchNorm statistics: the same bits.
      assert before[key].tobytes() == after[key].tobytes(), key
  assert losses.shape == (4,) and np.all(np.isfinite(losses))


def test_statistics_move_without_freezing(setup):
  # The control: with train=True the same frozen parameters keep their
  # values but BatchNorm's running statistics drift towards the new data.
  model, variables, _, x, y = setup
  out, _ = fit(model, variables, ci.transfer_optimizer(optax.sgd(0.1)), x, y, steps=2,
                  batch_size=8)
  before, after = _flat(variables), _flat(out)
  np.testing.assert_array_equal(before["params/conv1/conv/kernel"],
                                after["params/conv1/conv/kernel"])
  assert not np.array_equal(before["batch_stats/conv1/norm/mean"],
                            after["batch_stats/conv1/norm/mean"])


def test_fine_tuning_moves_the_backbone_less(setup):
  model, variables, _, x, y = setup
  def change(backbone_lr, steps):
    tx = ci.transfer_optimizer(optax.sgd(0.1), optax.sgd(backbone_lr))
    out, _ = fit(model, variables, tx, x, y, steps=steps, batch_size=8, freeze_statistics=True)
    return np.abs(_flat(out)["params/conv2/conv/kernel"]
                  - _flat(variables)["params/conv2/conv/kernel"]).max()
  # Plain SGD, one step from the same weights and batch: the update is the
  # rate times the same gradient, so the changes are in the ratio of the
  # rates. Only the rounding of kernel + update differs: kernel entries of
  # order 1 and changes above 1e-5 bound its relative effect by about
  # eps * 1e5 ~ 1e-2.
  slow, fast = change(0.01, 1), change(0.1, 1)
  assert 0 < slow < fast
  assert slow > 1e-5 and slow == pytest.approx(fast / 10, rel=1e-2)
  # Later steps follow gradients that depend on the earlier updates, so only
  # the order is asserted.
  assert 0 < change(0.01, 3) < change(0.1, 3)


def test_fit_checks_its_inputs(setup):
  model, variables, _, x, y = setup
  tx = optax.sgd(0.1)
  with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
    fit(model, variables, tx, x, y + 3, steps=1, batch_size=8)
  with pytest.raises(ValueError, match=r"batch_size must be in \[1, 24\]"):
    fit(model, variables, tx, x, y, steps=1, batch_size=32)
