"""``cnnjax.layers.initializers`` draws jax's numbers bit for bit, as one flat vector."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from cnnjax.layers import initializers

PAIRS = {
    "lecun_normal": (initializers.lecun_normal(), nn.initializers.lecun_normal()),
    "kaiming normal fan_out": (initializers.variance_scaling(2.0, "fan_out", "normal"),
                               nn.initializers.variance_scaling(2.0, "fan_out", "normal")),
    "he_normal": (initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
                  nn.initializers.he_normal()),
    "glorot uniform": (initializers.variance_scaling(1.0, "fan_avg", "uniform"),
                       nn.initializers.glorot_uniform()),
    "fan_geo_avg truncated": (initializers.variance_scaling(0.5, "fan_geo_avg", "truncated_normal"),
                              jax.nn.initializers.variance_scaling(0.5, "fan_geo_avg",
                                                                   "truncated_normal")),
    "batch and in axes": (initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 1),
                                                        out_axis=-1, batch_axis=2),
                          jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal",
                                                               in_axis=(0, 1), out_axis=-1,
                                                               batch_axis=2)),
    "truncated_normal 0.02": (initializers.truncated_normal(0.02),
                              nn.initializers.truncated_normal(0.02)),
    "truncated_normal bounds": (initializers.truncated_normal(0.5, lower=-1.0, upper=3.0),
                                jax.nn.initializers.truncated_normal(0.5, lower=-1.0, upper=3.0)),
    "normal": (initializers.normal(0.3), nn.initializers.normal(0.3)),
}


@pytest.fixture(params=[False, True], ids=["threefry", "partitionable threefry"])
def prng_mode(request):
  """Both threefry modes: the suite's default (tests/conftest.py) and JAX's."""
  with jax.threefry_partitionable(request.param):
    yield


@pytest.mark.parametrize("name", PAIRS)
def test_same_numbers_as_jax(name):
  """Every initialiser, in the suite's PRNG mode (both modes: the tests below)."""
  ours, theirs = PAIRS[name]
  # A 4-D kernel in float32 and a 5-D one in bfloat16; the shapes repeat across the
  # initialisers, so each distinct draw compiles once for the module.
  for shape, dtype in [((3, 3, 4, 8), jnp.float32), ((3, 3, 3, 2, 4), jnp.bfloat16)]:
    key = jax.random.key(len(shape))
    got, want = ours(key, shape, dtype), theirs(key, shape, dtype)
    assert got.shape == want.shape == shape and got.dtype == want.dtype == dtype
    # Exact: the same bits through the same elementwise arithmetic.
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32),
                                  err_msg=f"{name} {shape} {dtype}")


@pytest.mark.parametrize("shape", [(3, 3, 4, 8), (3, 3, 1, 32), (1, 1, 16, 8), (24, 10)])
def test_same_numbers_in_both_prng_modes_and_for_raw_keys(prng_mode, shape):
  ours, theirs = PAIRS["lecun_normal"]
  for key in (jax.random.key(3), jax.random.PRNGKey(3)):  # typed and raw (uint32) keys
    np.testing.assert_array_equal(ours(key, shape), theirs(key, shape), err_msg=str(shape))


def test_same_numbers_under_jit():
  ours, theirs = PAIRS["lecun_normal"]
  key = jax.random.key(7)
  got = jax.jit(ours, static_argnums=1)(key, (3, 3, 8, 16))
  np.testing.assert_array_equal(got, theirs(key, (3, 3, 8, 16)))


def _drawn_shapes(fn, *args):
  """The shapes of every ``random_bits`` draw in ``fn``'s jaxpr (nested jaxprs included)."""
  text = str(jax.make_jaxpr(fn, static_argnums=tuple(range(1, len(args))))(*args))
  return [tuple(int(d) for d in s.split(",") if d.strip())
          for s in re.findall(r"random_bits\[[^\]]*shape=\(([^)]*)\)", text)]


@pytest.mark.parametrize("name", ["lecun_normal", "kaiming normal fan_out", "truncated_normal 0.02",
                                  "normal"])
def test_threefry_draws_are_flat(name):
  """The point of the module: one 1-D draw, whatever the parameter's rank."""
  ours, theirs = PAIRS[name]
  key = jax.random.key(0)
  assert _drawn_shapes(ours, key, (3, 3, 4, 8)) == [(288,)]
  assert _drawn_shapes(theirs, key, (3, 3, 4, 8)) == [(3, 3, 4, 8)]  # what jax draws


def test_other_key_implementations_keep_the_shape():
  """``'rbg'`` bits come from XLA's RngBitGenerator, which need not be row-major in a flat
  draw on every backend: those keys draw the parameter's own shape, as jax does."""
  key = jax.random.key(0, impl="rbg")
  ours, theirs = PAIRS["lecun_normal"]
  assert _drawn_shapes(ours, key, (3, 3, 4, 8)) == [(3, 3, 4, 8)]
  np.testing.assert_array_equal(ours(key, (3, 3, 4, 8)), theirs(key, (3, 3, 4, 8)))


def test_errors_name_the_problem():
  with pytest.raises(ValueError, match="invalid mode .*'fan_sum'"):
    initializers.variance_scaling(1.0, "fan_sum", "normal")
  with pytest.raises(ValueError, match="invalid distribution .*'cauchy'"):
    initializers.variance_scaling(1.0, "fan_in", "cauchy")
  with pytest.raises(ValueError, match="1-dimensional"):  # jax's own message
    initializers.lecun_normal()(jax.random.key(0), (5,))


def test_conv_initialises_as_flax_conv_does():
  from cnnjax import layers  # noqa: PLC0415

  x = jnp.ones((1, 8, 8, 3))
  ours = layers.Conv(5, (3, 3)).init(jax.random.key(1), x)["params"]
  theirs = nn.Conv(5, (3, 3)).init(jax.random.key(1), x)["params"]
  jax.tree.map(np.testing.assert_array_equal, ours, theirs)


# One model in each mode (every initialiser is compared in both modes above): a
# parameter-shaped partitionable draw is the slow compile the flat draws avoid.
@pytest.mark.parametrize("name,fields,partitionable", [
    ("lenet5", {}, False),
    ("resnet18_cifar", {"stage_sizes": (1,), "num_filters": 4}, True),
], ids=["lenet5-threefry", "resnet18_cifar-partitionable threefry"])
def test_models_draw_the_same_parameters_as_shaped_draws(monkeypatch, name, fields, partitionable):
  """A whole model's ``init``, flat draws against the parameter-shaped draws they replace."""
  from cnnjax import models  # noqa: PLC0415

  model = models.create(name, num_classes=10, **fields)
  x = jnp.ones((1, *models.spec(name).input_shape))

  def init():  # One program per call (a new function each time): what the draws trace to.
    return jax.jit(lambda: model.init(jax.random.key(3), x, train=False))()

  with jax.threefry_partitionable(partitionable):
    flat = init()
    monkeypatch.setattr(initializers, "_draws_flat", lambda key, shape, dtype: False)
    shaped = init()
  jax.tree.map(np.testing.assert_array_equal, flat, shaped)
