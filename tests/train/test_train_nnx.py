"""NNX training: the engine's steps on an ``NNXTrainState``, runs with ``config.api='nnx'``.

One NNX step from the linen state's weights gives the linen step's
parameters, statistics and metrics under every strategy; a run with
``api='nnx'`` writes the same run directory and checkpoints that resume; a
user's own ``nnx.Module`` trains and holds its trained weights afterwards.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import cnnjax.nnx as cnnx
from cnnjax.train import Parallel, config as config_lib, train_and_evaluate
from cnnjax.train.nnx_state import (
    NNXTrainState,
    create_nnx_train_state,
    create_nnx_train_state_from_linen,
)
from cnnjax.train.runs import load_run, read_config, restore_checkpoint
from cnnjax.train.setup import compile_steps
from cnnjax.train.state import create_train_state
from testlib import EPS32, ArrayData, assert_trees_close, digest, tiny_config

# One step runs the same operations on both sides (the NNX model calls the
# linen module); XLA may fuse the two programs differently, so each value may
# differ by the rounding of the few float32 operations after the last shared
# sum: a few eps relative to the largest value of its tree.
RTOL = 16 * EPS32


def _pure(tree):
  return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


@pytest.mark.parametrize("strategy", ["pmap", "shard_map", "jit"])
def test_one_nnx_step_equals_one_linen_step(strategy, tiny_cnn, make_batches):
  parallel = Parallel(strategy, devices=jax.local_devices()[:2])
  model = tiny_cnn(dropout_rate=0.5, axis_name=parallel.axis_name)
  tx = optax.sgd(0.1, momentum=0.9)
  linen = create_train_state(model, tx, seed=3, input_shape=(1, 6, 6, 2))
  nnx_state = jax.jit(lambda: create_nnx_train_state_from_linen(
      model, tx, seed=3, input_shape=(1, 6, 6, 2)))()
  assert isinstance(nnx_state, NNXTrainState)
  # The same initial weights and key: the NNX run of a config starts where the linen one does.
  assert_trees_close(nnx_state.variables(), linen.variables(), rtol=0.0)
  np.testing.assert_array_equal(nnx_state.rng, linen.rng)

  step, _ = compile_steps(parallel, {"num_classes": 3})
  states = {"linen": parallel.put_state(linen), "nnx": parallel.put_state(nnx_state)}
  metrics = {}
  for batch in make_batches(2, 8):  # The second step sees the momentum of the first.
    for api in states:
      states[api], metrics[api] = step(states[api], parallel.shard_batch(batch))
  linen, nnx_state = (parallel.host_state(states[a]) for a in ("linen", "nnx"))
  assert int(nnx_state.step) == int(linen.step) == 2
  assert_trees_close(_pure(nnx_state.params), linen.params, rtol=RTOL)
  assert_trees_close(_pure(nnx_state.batch_stats), linen.batch_stats, rtol=RTOL)
  assert_trees_close(jax.tree_util.tree_leaves(_pure(nnx_state.opt_state)["opt_state"]),
                     jax.tree_util.tree_leaves(linen.opt_state), rtol=RTOL)
  assert_trees_close(*(parallel.host_metrics(metrics[a]) for a in ("nnx", "linen")), rtol=RTOL)


def test_nnx_step_skips_a_nonfinite_update(tiny_cnn, make_batches):
  parallel = Parallel("jit", devices=jax.local_devices()[:1])
  model = tiny_cnn(axis_name=None)
  state = jax.jit(lambda: create_nnx_train_state_from_linen(
      model, optax.sgd(0.1), seed=0, input_shape=(1, 6, 6, 2)))()
  before = jax.device_get(state.checkpoint_items())
  step, _ = compile_steps(parallel, {"num_classes": 3, "skip_nonfinite": True})
  batch = make_batches(1, 4)[0]
  batch["image"][0, 0, 0, 0] = np.nan
  new, metrics = step(parallel.put_state(state), parallel.shard_batch(batch))
  after = jax.device_get(parallel.host_state(new).checkpoint_items())
  assert float(metrics["skipped"]) == 1.0 and int(after["step"]) == 1
  for name in ("params", "batch_stats", "opt_state"):
    assert_trees_close(after[name], before[name], rtol=0.0)


def test_config_api_is_checked():
  config = config_lib.base_config()
  config.api = "nnz"
  with pytest.raises(ValueError, match=r"config api='nnz' is not one of \['linen', 'nnx'\] "
                                       r"\(did you mean 'nnx'\?\)"):
    config_lib.validate(config)


@pytest.fixture(scope="module")
def nnx_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("nnx") / "run")
  summary = train_and_evaluate(tiny_config(api="nnx"), workdir, devices=jax.local_devices()[:2])
  return workdir, summary


def test_an_nnx_run_writes_the_run_directory_of_a_linen_run(nnx_run, capsys):
  workdir, summary = nnx_run
  assert summary["steps"] == 10 and summary["checkpoints"][-1] == 10
  assert {"config.json", "metrics.jsonl", "summary.json", "checkpoints"} <= set(os.listdir(workdir))
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["api"] == "nnx"
  # The checkpoint holds the linen collections of the same model: load_run reads it
  # and the NNX model given them computes what the linen module does.
  run = load_run(workdir)
  assert run.step == 10 and set(run.variables) == {"params", "batch_stats"}
  model = cnnx.models.create("digits_cnn", num_classes=10, width=4, rngs=nnx.Rngs(0))
  cnnx.from_linen(model, run.variables)
  model.eval()
  x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
  expected = run.model.apply(run.variables, x, train=False)
  assert_trees_close(model(x), expected, rtol=RTOL)
  capsys.readouterr()
  again = train_and_evaluate(tiny_config(api="nnx"), workdir, devices=jax.local_devices()[:2])
  assert again == summary and "run already finished at step 10" in capsys.readouterr().out


def test_an_nnx_run_resumes_from_its_checkpoint(nnx_run, tmp_path):
  import shutil
  workdir, summary = nnx_run
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy)
  longer = train_and_evaluate(tiny_config(api="nnx", num_train_steps=12), copy,
                              devices=jax.local_devices()[:2])
  assert longer["resumed_from_step"] == 10 and longer["steps"] == 12


def test_resuming_an_nnx_run_as_linen_says_so_and_changes_nothing(nnx_run, tmp_path):
  import shutil

  from cnnjax.train import CheckpointMismatchError
  copy = str(tmp_path / "run")
  shutil.copytree(nnx_run[0], copy)
  before = digest(copy)
  with pytest.raises(CheckpointMismatchError, match=r"trained with config api='nnx', this config "
                                                    r"has api='linen'.*--config.api=nnx"):
    train_and_evaluate(tiny_config(num_train_steps=12), copy, devices=jax.local_devices()[:2])
  assert digest(copy) == before


class UserNet(nnx.Module):
  """A user's own NNX module: conv, BatchNorm, dropout drawing from its own ``nnx.Rngs``."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
    self.norm = nnx.BatchNorm(4, momentum=0.5, rngs=rngs)
    self.dropout = nnx.Dropout(0.2, rngs=rngs)
    self.head = nnx.Linear(4, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.norm(self.conv(x)))
    return self.head(self.dropout(x.mean(axis=(1, 2))))


def _user_config(steps):
  c = config_lib.base_config()
  c.model.name = "user_net"  # A label: the module is passed as an object.
  c.data.name = "arrays"
  c.batch_size, c.eval_batch_size, c.num_train_steps = 16, 32, steps
  c.optimizer.learning_rate = 0.05
  c.schedule.name = "constant"
  c.checkpoint_every_steps = 2
  c.progress_bar = c.plots = False
  c.compilation_cache_dir = ""
  return config_lib.lock(c)


def test_a_user_nnx_module_trains_resumes_and_holds_its_weights(tmp_path):
  workdir = str(tmp_path / "run")
  model = UserNet(rngs=nnx.Rngs(0))
  initial = jax.device_get(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  summary = train_and_evaluate(_user_config(6), workdir, model=model, data=ArrayData(),
                               devices=jax.local_devices()[:1])
  # Below the loss of a uniform guess over three classes: six steps learnt something.
  assert summary["test_loss"] < np.log(3) - 0.05
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["api"] == "nnx"  # An NNX object makes the run an NNX run.
  trained = jax.device_get(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
  assert not np.array_equal(trained["head"]["kernel"], initial["head"]["kernel"])
  # The object holds the weights of the last checkpoint.
  step, state, _ = restore_checkpoint(read_config(workdir), workdir,
                                      model=UserNet(rngs=nnx.Rngs(1)), data=ArrayData())
  assert step == 6
  assert_trees_close(nnx.to_pure_dict(state.params), trained, rtol=0.0)
  longer = train_and_evaluate(_user_config(8), workdir, model=UserNet(rngs=nnx.Rngs(5)),
                              data=ArrayData(), devices=jax.local_devices()[:1])
  # Resumed from step 6 (the Rngs counters and keys come back from the checkpoint).
  assert longer["resumed_from_step"] == 6 and longer["steps"] == 8


def test_the_checkpoint_of_a_user_module_holds_its_keys_as_data():
  state = jax.device_get(create_nnx_train_state(UserNet(rngs=nnx.Rngs(0)), optax.sgd(0.1), seed=0))
  items = state.checkpoint_items()
  leaves = jax.tree_util.tree_leaves(items)
  assert leaves and not any(jnp.issubdtype(x.dtype, jax.dtypes.prng_key) for x in leaves)
  keys = jax.tree_util.tree_leaves(nnx.state(state.replace_checkpoint_items(items).model(),
                                             nnx.RngKey))
  assert keys and all(jnp.issubdtype(k.dtype, jax.dtypes.prng_key) for k in keys)
