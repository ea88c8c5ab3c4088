"""BatchNorm: parity with flax.linen.BatchNorm, pmap/shard_map statistics, bf16, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from cnnjax.layers import BatchNorm
from testlib import assert_close
from testlib import normal as _normal
from testlib import random_like

KEY = jax.random.key(0)


def _random_params(variables, seed=3):
  """Replaces scale/bias (ones/zeros at init) with random values, if there are any."""
  if "params" not in variables:
    return variables
  return {**variables, "params": random_like(variables["params"], seed)}


@pytest.mark.parametrize("kw", [
    dict(),
    dict(momentum=0.9, epsilon=1e-3),
    dict(use_scale=False, use_bias=False),
    dict(axis=1, momentum=0.5),
])
def test_batch_norm_matches_flax(kw):
  x0 = _normal((6, 4, 3, 5), seed=0)
  ours, ref = BatchNorm(**kw), nn.BatchNorm(**kw)
  variables = _random_params(ours.init(KEY, x0, train=False))
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(
      jnp.shape, ref.init(KEY, x0, use_running_average=False))
  train = jax.jit(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]))
  train_ref = jax.jit(lambda v, x: ref.apply(v, x, use_running_average=False, mutable=["batch_stats"]))
  v_ours = v_ref = variables
  for step in range(4):
    x = _normal((6, 4, 3, 5), seed=step + 1, loc=step, scale=1 + step)
    y, upd = train(v_ours, x)
    y_ref, upd_ref = train_ref(v_ref, x)
    # Normalised outputs (O(1)) from moments over 72 values in two orders: relative to max|y|.
    assert_close(y, y_ref, rtol=1e-5)
    v_ours, v_ref = {**v_ours, **upd}, {**v_ref, **upd_ref}
  # Running moments of inputs of mean <= 3 and variance <= 16, relative to the largest.
  assert_close(v_ours["batch_stats"]["mean"], v_ref["batch_stats"]["mean"], rtol=1e-5)
  assert_close(v_ours["batch_stats"]["var"], v_ref["batch_stats"]["var"], rtol=1e-5)
  x = _normal((3, 4, 3, 5), seed=9)
  # Evaluation: the same affine map of x in two orders, relative to the largest output.
  assert_close(ours.apply(v_ours, x, train=False),
               ref.apply(v_ref, x, use_running_average=True), rtol=1e-5)


def test_batch_norm_running_average_rule():
  x = _normal((16, 2, 2, 3), seed=4, loc=2.0, scale=3.0)
  bn = BatchNorm(momentum=0.8)
  variables = bn.init(KEY, x, train=True)
  # init does not update the statistics (as Flax).
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], 0.0)
  np.testing.assert_array_equal(variables["batch_stats"]["var"], 1.0)
  y, upd = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
  # Moments over the batch in two orders (a few eps32 x the number of values), relative to the largest.
  assert_close(upd["batch_stats"]["mean"], 0.2 * mean, rtol=1e-5)
  assert_close(upd["batch_stats"]["var"], 0.8 + 0.2 * var, rtol=1e-5)
  # Normalised outputs of O(1); rsqrt vs sqrt-and-divide differ by a few eps32.
  assert_close(y, (x - mean) / jnp.sqrt(var + 1e-5), rtol=1e-5)
  # Evaluation uses the running statistics.
  y_eval = bn.apply({**variables, **upd}, x, train=False)
  expected = (x - upd["batch_stats"]["mean"]) / jnp.sqrt(upd["batch_stats"]["var"] + 1e-5)
  assert_close(y_eval, expected, rtol=1e-5)  # as above, with the running statistics


def _per_device(x, devices):
  return x.reshape(devices, x.shape[0] // devices, *x.shape[1:])


def test_batch_norm_pmap_equals_concatenated_batch():
  x = _normal((8, 3, 3, 4), seed=5, loc=1.0, scale=2.0)
  bn = BatchNorm(axis_name="batch", momentum=0.9)
  variables = _random_params(bn.init(KEY, x, train=False))
  step = jax.pmap(lambda v, x: bn.apply(v, x, train=True, mutable=["batch_stats"]),
                  axis_name="batch", in_axes=(None, 0))
  y, upd = step(variables, _per_device(x, 4))
  y_all, upd_all = BatchNorm(momentum=0.9).apply(variables, x, train=True, mutable=["batch_stats"])
  # Moments psum'd over 4 devices vs over one batch: another summation order, relative to max|y|.
  assert_close(y.reshape(x.shape), y_all, rtol=1e-5)
  for name in ("mean", "var"):
    for device in range(4):
      assert_close(upd["batch_stats"][name][device], upd_all["batch_stats"][name], rtol=1e-5)  # as y


def test_batch_norm_axis_index_groups():
  x = _normal((8, 2, 2, 3), seed=6, scale=2.0)
  bn = BatchNorm(axis_name="batch", axis_index_groups=[[0, 1], [2, 3]])
  variables = bn.init(KEY, x, train=False)
  step = jax.pmap(lambda v, x: bn.apply(v, x, train=True, mutable=["batch_stats"]),
                  axis_name="batch", in_axes=(None, 0))
  y, _ = step(variables, _per_device(x, 4))
  for group, rows in enumerate((slice(0, 4), slice(4, 8))):
    expected = BatchNorm().apply(variables, x[rows], train=True, mutable=["batch_stats"])[0]
    # Group moments psum'd over 2 devices vs over one batch, relative to max|y|.
    assert_close(y[2 * group:2 * group + 2].reshape(expected.shape), expected, rtol=1e-5)


def test_batch_norm_shard_map_equals_pmap():
  x = _normal((8, 2, 2, 3), seed=7, loc=-1.0)
  bn = BatchNorm(axis_name="batch")
  variables = bn.init(KEY, x, train=False)
  body = lambda v, x: bn.apply(v, x, train=True, mutable=["batch_stats"])  # noqa: E731
  mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
  sharded = jax.jit(jax.shard_map(body, mesh=mesh, in_specs=(P(), P("batch")),
                                  out_specs=(P("batch"), P())))
  y, upd = sharded(variables, x)
  y_pmap, upd_pmap = jax.pmap(body, axis_name="batch", in_axes=(None, 0))(variables, _per_device(x, 4))
  # The same per-device body under shard_map and pmap: only fusion may differ, relative to max|y|.
  assert_close(y, y_pmap.reshape(x.shape), rtol=1e-5)
  assert_close(upd["batch_stats"]["var"], upd_pmap["batch_stats"]["var"][0], rtol=1e-6)


def test_batch_norm_unbound_axis_name_is_a_value_error():
  x = _normal((8, 2, 2, 3))
  bn = BatchNorm(axis_name="batch")
  variables = bn.init(KEY, x, train=True)  # init needs no bound axis, as in Flax
  with pytest.raises(ValueError, match=r"axis_name='batch'.*pmap.*shard_map"):
    bn.apply(variables, x, train=True, mutable=["batch_stats"])
  other = jax.pmap(lambda v, x: bn.apply(v, x, train=True, mutable=["batch_stats"]),
                   axis_name="devices", in_axes=(None, 0))
  with pytest.raises(ValueError, match=r"axis 'batch', but no axis of that name is bound"):
    other(variables, _per_device(x, 2))
  # Evaluation reads the running statistics and needs no axis.
  assert bn.apply(variables, x, train=False).shape == x.shape


def test_batch_norm_bf16():
  x = _normal((16, 3, 3, 4), seed=8, loc=3.0, scale=0.5).astype(jnp.bfloat16)
  bn = BatchNorm(dtype=jnp.bfloat16, momentum=0.0)
  variables = bn.init(KEY, x, train=False)
  y, upd = bn.apply(variables, x, train=True, mutable=["batch_stats"])
  assert y.dtype == jnp.bfloat16
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
  assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(upd))
  # Moments of the bf16 values, computed in float32.
  x32 = x.astype(jnp.float32)
  # float32 moments of the same bf16 values in two orders; the variance via E[x^2] - E[x]^2
  # loses up to 1e-3 relative to cancellation, measured against the largest variance.
  assert_close(upd["batch_stats"]["mean"], x32.mean((0, 1, 2)), rtol=1e-5)
  assert_close(upd["batch_stats"]["var"], x32.var((0, 1, 2)), rtol=1e-3)
  assert bn.apply({**variables, **upd}, x, train=False).dtype == jnp.bfloat16


def test_batch_norm_variance_clamped_at_zero():
  # A constant channel: E[x^2] - E[x]^2 cancels and can round below zero.
  x = jnp.full((7, 3, 3, 2), 1234.567, jnp.float32).at[..., 1].set(0.1)
  bn = BatchNorm(momentum=0.0)
  y, upd = bn.apply(bn.init(KEY, x, train=False), x, train=True, mutable=["batch_stats"])
  assert bool(jnp.all(upd["batch_stats"]["var"] >= 0))
  assert bool(jnp.all(jnp.isfinite(y)))


def test_batch_norm_errors():
  bn = BatchNorm()
  variables = bn.init(KEY, jnp.zeros((2, 8, 8, 3)), train=False)
  with pytest.raises(ValueError, match=r"expected 3 features.*\(2, 3, 8, 8\).*looks channels-first \(NCHW"):
    bn.apply(variables, jnp.zeros((2, 3, 8, 8)), train=False)
  with pytest.raises(ValueError, match="mutable=\\['batch_stats'\\]"):
    bn.apply(variables, jnp.zeros((2, 8, 8, 3)), train=True)
  with pytest.raises(ValueError, match=r"rank >= 2.*\(3,\)"):
    bn.apply(variables, jnp.zeros((3,)), train=False)
  with pytest.raises(TypeError, match="floating"):
    bn.apply(variables, jnp.zeros((2, 8, 8, 3), jnp.int32), train=False)
  with pytest.raises(TypeError, match="train"):
    bn.apply(variables, jnp.zeros((2, 8, 8, 3)))
