"""The three strategies (pmap, shard_map, jit) train alike; jit's compiled step reduces only what it must."""

import functools
import re

import jax
import numpy as np
import optax
import pytest

from cnnjax.train.parallel import Parallel
from cnnjax.train.state import create_train_state
from cnnjax.train.steps import eval_step, train_step

NUM_CLASSES = 3
STEPS = 3
COLLECTIVES = ("all-gather", "all-to-all", "collective-permute", "reduce-scatter")


def _state(model):
  return create_train_state(model, optax.sgd(0.1, momentum=0.9), seed=0, input_shape=(1, 6, 6, 2))


def _train(strategy, n, tiny_cnn, batches):
  parallel = Parallel(strategy, jax.local_devices()[:n])
  model = tiny_cnn(num_classes=NUM_CLASSES, axis_name=parallel.axis_name)
  step = parallel.train_step(functools.partial(
      train_step, num_classes=NUM_CLASSES, axis_name=parallel.axis_name))
  evaluate = parallel.eval_step(functools.partial(eval_step, axis_name=parallel.axis_name))
  state = parallel.put_state(_state(model))
  metrics = []
  for batch in batches:
    state, m = step(state, parallel.shard_batch(batch))
    metrics.append(parallel.host_metrics(m))
  metrics.append(parallel.host_metrics(evaluate(state, parallel.shard_batch(batches[0]))))
  return parallel.host_state(state), metrics


@pytest.fixture(scope="module")
def trained(tiny_cnn):
  """Every strategy on 4 devices, and pmap on 1, after the same STEPS batches of 8."""
  rng = np.random.default_rng(0)
  batches = []
  for _ in range(STEPS):
    labels = rng.integers(0, NUM_CLASSES, 8).astype(np.int32)
    images = rng.normal(size=(8, 6, 6, 2)).astype(np.float32) + labels[:, None, None, None]
    batches.append({"image": images, "label": labels, "mask": np.ones(8, bool)})
  runs = {(s, 4): _train(s, 4, tiny_cnn, batches) for s in ("pmap", "shard_map", "jit")}
  runs["pmap", 1] = _train("pmap", 1, tiny_cnn, batches)
  return runs


@pytest.mark.parametrize("run", [("shard_map", 4), ("jit", 4), ("pmap", 1)], ids=str)
def test_strategies_give_the_same_params_statistics_and_metrics(trained, run):
  want_state, want_metrics = trained["pmap", 4]
  got_state, got_metrics = trained[run]
  # One mathematics, three summation orders: pmap and shard_map add four
  # per-device partial sums (pmean/psum), jit lets XLA split the global sums,
  # one device adds 8 terms at once. Each reduction is exact to ~1e-7
  # relative (float32 epsilon times a handful of terms); three SGD steps with
  # momentum compound that, so 1e-5 relative (1e-6 absolute for entries near
  # zero) bounds it, while a wrong reduction (per-device BatchNorm statistics,
  # a gradient not averaged or averaged twice) is off by 1e-2 or more.
  for name in ("params", "batch_stats"):
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(getattr(got_state, name)),
                            jax.tree_util.tree_leaves(getattr(want_state, name)), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6,
                                 err_msg=f"{run} {name}{jax.tree_util.keystr(path)}")
  assert int(got_state.step) == STEPS
  for a, b in zip(got_metrics, want_metrics, strict=True):
    assert a["count"] == b["count"] == 8  # counts are exact
    # Sums of 8 per-example losses (~1): 1e-5 relative as above.
    np.testing.assert_allclose(a["loss_sum"], b["loss_sum"], rtol=1e-5)
    assert a["correct"] == b["correct"]


def _all_reduced_elements(hlo: str) -> int:
  """Elements all-reduced by a compiled module (the shapes of every all-reduce's result)."""
  total = 0
  for line in hlo.splitlines():
    match = re.search(r"=\s*(\(.*?\)|\S+)\s+all-reduce(?:-start)?\(", line)
    if match:
      for dims in re.findall(r"[a-z]+\d*\[([\d,]*)\]", match.group(1)):
        total += int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
  return total


def test_jit_step_reduces_gradients_and_moments_and_nothing_else(tiny_cnn, make_batches):
  batch = make_batches(1, 8)[0]
  model = tiny_cnn(num_classes=NUM_CLASSES, axis_name=None)
  state = _state(model)
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
  channels = state.batch_stats["BatchNorm_0"]["mean"].size
  reduced = {}
  for n in (1, 2):
    parallel = Parallel("jit", jax.local_devices()[:n])
    step = parallel.train_step(functools.partial(train_step, num_classes=NUM_CLASSES,
                                                 axis_name=None))
    hlo = step.lower(parallel.put_state(state), parallel.shard_batch(batch)).compile().as_text()
    for op in COLLECTIVES:  # No resharding: the state stays replicated, the batch split.
      assert f" {op}(" not in hlo and f" {op}-start(" not in hlo, op
    reduced[n] = _all_reduced_elements(hlo)
  assert reduced[1] == 0  # one device: nothing crosses devices
  # Two devices: every gradient entry is summed across devices once, plus
  # BatchNorm's per-channel sums (the mean and the mean of squares forward,
  # at most two more backward) and the handful of scalar metrics; no second
  # reduction of the gradients or of anything batch-sized.
  assert num_params <= reduced[2] <= num_params + 4 * channels + 8, (reduced[2], num_params)
