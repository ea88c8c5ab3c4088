"""Equivalence and behaviour of the pure steps under pmap and shard_map."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.train import optim
from cnnjax.train.parallel import Parallel
from cnnjax.train.state import create_train_state
from cnnjax.train.steps import eval_step, summarize, train_step
from testlib import assert_trees_close

NUM_CLASSES = 3


def _state(model, lr=0.1):
  tx = optax.sgd(lr, momentum=0.9)
  return create_train_state(model, tx, seed=0, input_shape=(1, 6, 6, 2))


def _run(parallel, state, batches, **step_kwargs):
  step = parallel.train_step(functools.partial(
      train_step, num_classes=NUM_CLASSES, **step_kwargs))
  state = parallel.put_state(state)
  metrics = []
  for batch in batches:
    state, m = step(state, parallel.shard_batch(batch))
    metrics.append(parallel.host_metrics(m))
  return parallel.host_state(state), metrics


def test_pmap_on_four_devices_equals_one_device_on_the_whole_batch(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES)
  batches = make_batches(3, 8)
  devices = jax.local_devices()
  four, m4 = _run(Parallel("pmap", devices[:4]), _state(model), batches)
  one, m1 = _run(Parallel("pmap", devices[:1]), _state(model), batches)
  # Same mathematics, different float32 summation order: BatchNorm moments and
  # gradients are sums of 4 partial sums (pmean) on four devices and one sum of
  # 8 terms on one. Each reduction reorders at the 1e-7 relative level and
  # three SGD steps with momentum compound it, so 1e-5 relative (of the tree's
  # largest entry, for entries near zero) is a tight bound that a wrong collective (a missing
  # pmean, per-device BatchNorm statistics) exceeds by orders of magnitude.
  assert_trees_close(four.params, one.params, rtol=1e-5)
  assert_trees_close(four.batch_stats, one.batch_stats, rtol=1e-5)
  assert int(four.step) == int(one.step) == 3
  for a, b in zip(m4, m1):
    assert a["count"] == b["count"] == 8
    # A sum of 8 losses of O(1) in another order, the same compounded rounding.
    np.testing.assert_allclose(a["loss_sum"], b["loss_sum"], rtol=1e-5)


def test_batchnorm_without_axis_name_would_differ(tiny_cnn, make_batches):
  """The comparison above is sensitive: per-device statistics change the result."""
  import flax.linen as nn

  class LocalBN(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
      return nn.Dense(NUM_CLASSES)(nn.relu(x).mean(axis=(1, 2)))

  batches = make_batches(2, 8)
  devices = jax.local_devices()
  four, _ = _run(Parallel("pmap", devices[:4]), _state(LocalBN()), batches)
  one, _ = _run(Parallel("pmap", devices[:1]), _state(LocalBN()), batches)
  diff = max(float(np.max(np.abs(x - y))) for x, y in zip(
      jax.tree_util.tree_leaves(four.batch_stats), jax.tree_util.tree_leaves(one.batch_stats)))
  assert diff > 1e-3


def test_pmap_equals_shard_map(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES, dropout_rate=0.3)
  batches = make_batches(3, 8)
  devices = jax.local_devices()[:4]
  flip = lambda key, image: jnp.where(jax.random.bernoulli(key), image[:, ::-1], image)  # noqa: E731
  kwargs = dict(augment=flip, label_smoothing=0.1)
  a, ma = _run(Parallel("pmap", devices), _state(model), batches, **kwargs)
  b, mb = _run(Parallel("shard_map", devices), _state(model), batches, **kwargs)
  # The same per-device program, keys and collectives: equal up to the
  # compiler's freedom in fusing the two programs (float32 rounding, ~8 eps32
  # relative to the tree's largest entry).
  assert_trees_close(a.params, b.params, rtol=1e-6)
  assert_trees_close(a.batch_stats, b.batch_stats, rtol=1e-6)
  assert_trees_close(a.opt_state, b.opt_state, rtol=1e-6)
  for x, y in zip(ma, mb):
    np.testing.assert_allclose(x["loss_sum"], y["loss_sum"], rtol=1e-6)  # as above, a scalar


def test_steps_change_params_and_learn(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES)
  # One batch seen 60 times: the network must memorise it.
  batches = make_batches(1, 16) * 60
  state = _state(model, lr=0.05)
  final, metrics = _run(Parallel("pmap", jax.local_devices()[:2]), state, batches)
  first, last = summarize(metrics[0]), summarize(metrics[-1])
  assert last["loss"] < 0.5 * first["loss"]
  assert last["accuracy"] == 1.0
  assert not np.array_equal(final.params["head"]["kernel"], np.asarray(state.params["head"]["kernel"]))


def test_eval_counts_each_example_once_with_padding(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES)
  state = _state(model)
  batch = make_batches(1, 6)[0]
  parallel = Parallel("pmap", jax.local_devices()[:4])
  p_eval = parallel.eval_step(eval_step)
  device_state = parallel.put_state(state)
  # 6 real examples padded to 8 with garbage and mask=False; the padding sits
  # on the last device only, so a mean of per-device means would be wrong.
  padded = {k: np.concatenate([v, v[:2] * 0 + (99 if k == "image" else 0)]) for k, v in batch.items()}
  padded["mask"] = np.array([True] * 6 + [False] * 2)
  got = summarize(parallel.host_metrics(p_eval(device_state, parallel.shard_batch(padded))))
  logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                          batch["image"], train=False)
  want_loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])))
  want_acc = float(np.mean(np.argmax(logits, -1) == batch["label"]))
  assert got["count"] == 6
  # Mean cross-entropy of 6 examples, summed on device then divided on the host: a few eps32.
  np.testing.assert_allclose(got["loss"], want_loss, rtol=1e-5)
  assert got["accuracy"] == pytest.approx(want_acc)  # a ratio of counts: exact up to 1e-6


def test_skip_nonfinite_keeps_the_state(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES)
  batch = make_batches(1, 4)[0]
  batch["image"][0, 0, 0, 0] = np.nan
  state = _state(model)
  parallel = Parallel("pmap", jax.local_devices()[:2])
  out, metrics = _run(parallel, state, [batch], skip_nonfinite=True)
  assert metrics[0]["skipped"] == 1.0
  assert int(out.step) == 1
  for x, y in zip(jax.tree_util.tree_leaves(out.params), jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_array_equal(x, np.asarray(y))
  out, metrics = _run(parallel, state, [batch], skip_nonfinite=False)
  assert metrics[0]["skipped"] == 0.0
  assert not np.isfinite(out.params["head"]["kernel"]).all()


def test_mixup_targets_reach_the_loss(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES)
  batch = make_batches(1, 4)[0]
  calls = []

  def mix(key, images, targets, alpha):
    calls.append(alpha)
    return images, jnp.full_like(targets, 1.0 / NUM_CLASSES)

  parallel = Parallel("pmap", jax.local_devices()[:2])
  _, plain = _run(parallel, _state(model), [batch])
  _, mixed = _run(parallel, _state(model), [batch], mixup=mix, mixup_alpha=0.2)
  assert calls == [0.2]
  # Mixing changes the loss by O(1); approx's 1e-6 relative is far below that.
  assert plain[0]["loss_sum"] != pytest.approx(mixed[0]["loss_sum"])


def test_batch_size_not_divisible_is_a_value_error():
  parallel = Parallel("pmap", jax.local_devices()[:4])
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    parallel.check_batch_size(10)
  with pytest.raises(ValueError, match="local devices"):
    parallel.shard_batch({"image": np.zeros((6, 2, 2, 1), np.float32)})
  with pytest.raises(ValueError, match="unknown strategy 'pjit'"):
    Parallel("pjit")


def test_optimizer_and_schedule_names():
  opt = dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4,
             grad_clip_norm=1.0)
  sched = dict(name="cosine", warmup_epochs=1, boundaries_epochs=(), decay_factor=0.1)
  tx = optim.create_optimizer(opt, sched, steps_per_epoch=10, num_epochs=5)
  assert isinstance(tx, optax.GradientTransformation)
  lr = optim.create_learning_rate_schedule(sched, 0.1, 10, 5)
  # Schedules are a few float32 operations on the peak rate 0.1: relative 1e-6, and at the
  # end of the cosine an absolute 1e-6 = 1e-5 of the peak.
  assert float(lr(0)) == 0.0 and float(lr(10)) == pytest.approx(0.1)
  assert float(lr(50)) == pytest.approx(0.0, abs=1e-6)
  piece = optim.create_learning_rate_schedule(
      dict(name="piecewise", warmup_epochs=0, boundaries_epochs=(2, 4), decay_factor=0.1), 1.0, 10, 5)
  # Products of the decay factor in float32: relative 1e-6.
  assert [float(piece(s)) for s in (0, 19, 21, 41)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
  with pytest.raises(ValueError, match=r"unknown optimizer 'adagrad'.*'sgd', 'adam', 'adamw'"):
    optim.create_optimizer(dict(opt, name="adagrad"), sched, 10, 5)
  with pytest.raises(ValueError, match=r"unknown schedule 'linear'.*'constant'"):
    optim.create_learning_rate_schedule(dict(sched, name="linear"), 0.1, 10, 5)


def test_weight_decay_only_on_kernels(tiny_cnn):
  state = _state(tiny_cnn(num_classes=NUM_CLASSES))
  mask = optim.decay_mask(state.params)
  assert mask["Conv_0"]["kernel"] and mask["head"]["kernel"]
  assert not mask["Conv_0"]["bias"] and not mask["head"]["bias"]
  assert not mask["BatchNorm_0"]["scale"] and not mask["BatchNorm_0"]["bias"]
  # With zero gradients, adamw moves decayed kernels and leaves the rest alone.
  tx = optim.create_optimizer(dict(name="adamw", learning_rate=0.1, weight_decay=0.5),
                              dict(name="constant"), 1, 1)
  zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
  updates, _ = tx.update(zeros, tx.init(state.params), state.params)
  assert np.any(updates["head"]["kernel"] != 0)
  assert np.all(updates["head"]["bias"] == 0) and np.all(updates["BatchNorm_0"]["scale"] == 0)


def test_bfloat16_compute_keeps_float32_params_and_statistics(tiny_cnn, make_batches):
  model = tiny_cnn(num_classes=NUM_CLASSES, dtype=jnp.bfloat16)
  final, metrics = _run(Parallel("pmap", jax.local_devices()[:2]), _state(model), make_batches(2, 4))
  for leaf in jax.tree_util.tree_leaves((final.params, final.batch_stats)):
    assert leaf.dtype == np.float32
  assert np.isfinite(metrics[-1]["loss_sum"])


@pytest.mark.parametrize("strategy", ["pmap", "shard_map"])
def test_one_device_step_compiles_no_all_reduce(strategy, make_batches):
  """With one device the step's and BatchNorm's collectives are skipped (ops.collectives)."""
  import flax.linen as nn

  from cnnjax.layers import BatchNorm
  from cnnjax.train.steps import AXIS

  class BNNet(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      x = BatchNorm(axis_name=AXIS, momentum=0.5)(nn.Conv(4, (3, 3))(x), train=train)
      x = BatchNorm(axis_name=AXIS, momentum=0.5)(nn.Conv(4, (3, 3))(nn.relu(x)), train=train)
      return nn.Dense(NUM_CLASSES)(x.mean(axis=(1, 2)))

  batch = make_batches(1, 8)[0]
  counts = {}
  for n in (1, 2):
    parallel = Parallel(strategy, jax.local_devices()[:n])
    step = parallel.train_step(functools.partial(train_step, num_classes=NUM_CLASSES))
    hlo = step.lower(parallel.put_state(_state(BNNet())),
                     parallel.shard_batch(batch)).compile().as_text()
    counts[n] = hlo.count("all-reduce(") + hlo.count("all-reduce-start(")
  assert counts[1] == 0
  assert counts[2] > 0  # the count is sensitive: two devices do reduce
