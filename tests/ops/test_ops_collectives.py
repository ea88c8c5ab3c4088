"""``ops.collectives``: lax's collectives, skipped over an axis of one device."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import Mesh, PartitionSpec as P

from cnnjax.ops import collectives


def _x(n):
  return jnp.arange(n * 3, dtype=jnp.float32).reshape(n, 3) ** 1.5


@pytest.mark.parametrize("name", ["pmean", "psum"])
@pytest.mark.parametrize("n", [1, 4])
def test_equals_lax_under_pmap(name, n):
  ours, theirs = getattr(collectives, name), getattr(lax, name)
  x = _x(n)
  got = jax.pmap(lambda v: ours({"a": v, "b": 2 * v}, "i"), axis_name="i",
                 devices=jax.local_devices()[:n])(x)
  want = jax.pmap(lambda v: theirs({"a": v, "b": 2 * v}, "i"), axis_name="i",
                  devices=jax.local_devices()[:n])(x)
  for key in ("a", "b"):
    np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("n", [1, 4])
def test_equals_lax_under_shard_map_and_vmap(n):
  mesh = Mesh(np.array(jax.local_devices()[:n]), ("i",))
  x = _x(n)
  spec = P("i")
  ours = jax.shard_map(lambda v: collectives.pmean(v, "i"), mesh=mesh, in_specs=spec, out_specs=spec)
  theirs = jax.shard_map(lambda v: lax.pmean(v, "i"), mesh=mesh, in_specs=spec, out_specs=spec)
  np.testing.assert_array_equal(ours(x), theirs(x))
  np.testing.assert_array_equal(jax.vmap(lambda v: collectives.psum(v, "i"), axis_name="i")(x),
                                jax.vmap(lambda v: lax.psum(v, "i"), axis_name="i")(x))


@pytest.mark.parametrize("n", [1, 2])
def test_gradients_equal_lax(n):
  x = _x(n)

  def loss(fn, v):
    return jnp.sum(jnp.sin(fn(v * v, "i")))

  ours = jax.pmap(jax.grad(functools.partial(loss, collectives.pmean)), axis_name="i",
                  devices=jax.local_devices()[:n])(x)
  theirs = jax.pmap(jax.grad(functools.partial(loss, lax.pmean)), axis_name="i",
                    devices=jax.local_devices()[:n])(x)
  # The same collective on O(1) values: only XLA's fusion choices may differ, a few eps32.
  np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def _all_reduces(fn, x, n):
  hlo = jax.pmap(fn, axis_name="i", devices=jax.local_devices()[:n]).lower(x).compile().as_text()
  return hlo.count("all-reduce(")


def test_one_device_emits_no_all_reduce_and_more_devices_do():
  fn = lambda v: collectives.psum(v, "i") + collectives.pmean(v, "i")  # noqa: E731
  assert _all_reduces(fn, _x(1), 1) == 0
  assert _all_reduces(lambda v: lax.psum(v, "i"), _x(1), 1) >= 1  # what is avoided
  assert _all_reduces(fn, _x(2), 2) >= 1


def test_tuple_of_axis_names_is_the_product():
  x = jnp.ones((2, 3, 4))
  out = jax.pmap(jax.vmap(lambda v: collectives.psum(v, ("a", "b")), axis_name="b"),
                 axis_name="a", devices=jax.local_devices()[:2])(x)
  np.testing.assert_array_equal(out, 6 * x)
  one = jax.pmap(jax.vmap(lambda v: collectives.psum(v, ("a", "b")), axis_name="b"),
                 axis_name="a", devices=jax.local_devices()[:1])(x[:1, :1])
  np.testing.assert_array_equal(one, x[:1, :1])


def test_unbound_axis_is_a_value_error_naming_it_and_the_caller():
  with pytest.raises(ValueError, match=r"BatchNorm.*named axis 'batch', but no axis of that name is bound"):
    jax.jit(lambda v: collectives.pmean(v, "batch", caller="BatchNorm"))(jnp.ones(3))
