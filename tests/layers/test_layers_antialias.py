"""BlurPool, MaxBlurPool, PolyphaseDownsample; exact shift invariance of a circular APS network."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax import layers, ops
from cnnjax.testing import assert_shift_equivariant, assert_shift_invariant
from testlib import assert_close
from testlib import flat_normal as _flat_normal
from testlib import random as _random


@pytest.mark.parametrize("shape,strides,expected", [
    ((2, 8, 8, 3), 2, (2, 4, 4, 3)),
    ((2, 7, 9, 3), 2, (2, 4, 5, 3)),
    ((1, 9, 9, 1), 3, (1, 3, 3, 1)),
    ((1, 8, 6, 2), (2, 1), (1, 4, 6, 2)),
    ((2, 10, 4), 2, (2, 5, 4)),
    ((1, 4, 6, 8, 2), 2, (1, 2, 3, 4, 2)),
])
def test_blur_pool_shapes_and_no_parameters(shape, strides, expected):
  layer = layers.BlurPool(strides=strides)
  y, variables = layer.init_with_output(jax.random.key(0), _random(shape))
  assert y.shape == expected
  assert not jax.tree_util.tree_leaves(variables)


def test_blur_pool_is_the_op():
  x = _random((2, 9, 8, 3), seed=1)
  layer = layers.BlurPool(filter_size=5, strides=2, padding="CIRCULAR")
  np.testing.assert_array_equal(layer.apply({}, x), ops.blur_pool(x, 5, 2, "CIRCULAR"))


def test_max_blur_pool_is_dense_max_then_blur():
  x = _random((2, 8, 10, 3), seed=2)
  layer = layers.MaxBlurPool()
  y = layer.apply({}, x)
  assert y.shape == (2, 4, 5, 3)
  expected = ops.blur_pool(ops.max_pool(x, (2, 2), padding="SAME"), 3, 2, "REFLECT")
  # The same ops composed the same way: only XLA's fusion may reorder, a few eps32.
  np.testing.assert_allclose(y, expected, rtol=1e-6)
  valid = layers.MaxBlurPool(window_shape=(2, 2), pool_padding="VALID").apply({}, x)
  assert valid.shape == (2, 4, 5, 3)  # ceil((8 - 1) / 2), ceil((10 - 1) / 2), as Zhang's code


def test_max_blur_pool_is_closer_to_shift_invariant_than_max_pool():
  # Mean |f(shift(x)) - f(x)| after a global average pool, over one-pixel shifts.
  x = _random((8, 16, 16, 4), seed=3)
  head = lambda pool: jax.jit(lambda z: ops.global_avg_pool(pool(z)))
  strided = head(lambda z: ops.max_pool(z, (2, 2), (2, 2)))
  blurred = head(lambda z: layers.MaxBlurPool(pool_padding="CIRCULAR", padding="CIRCULAR").apply({}, z))
  def change(f):
    return float(np.mean([np.abs(f(np.roll(x, s, axis=(1, 2))) - f(x)).mean() for s in [(1, 0), (0, 1), (1, 1)]]))
  assert change(strided) > 0.01
  # Binomial taps sum to 1/2 on even and on odd positions ((1 - 1)^(k - 1) = 0), so
  # the mean after a circular stride-2 blur is the input's mean whatever the phase.
  assert change(blurred) < 1e-5


@pytest.mark.parametrize("size", [2, 3, 5, 7])
def test_circular_blur_pool_preserves_the_mean_under_any_shift(size):
  x = _random((2, 8, 8, 3), seed=11)
  fn = lambda z: ops.global_avg_pool(layers.BlurPool(size, padding="CIRCULAR").apply({}, z))
  # Means of 64 unit-normal values (O(0.1)); rounding ~ 64 eps32 relative to the largest.
  assert_close(fn(x), ops.global_avg_pool(x), rtol=1e-5)
  assert_shift_invariant(fn, x, (1, 3), rtol=1e-5)


def test_max_blur_pool_rank_mismatch():
  with pytest.raises(ValueError, match=r"window_shape \(2, 2\) has 2 axes but the input"):
    layers.MaxBlurPool().apply({}, _random((1, 8, 2)))


def test_polyphase_downsample_shape_and_sown_index():
  x = _random((3, 8, 6, 2), seed=4)
  y, state = layers.PolyphaseDownsample().apply({}, x, mutable=["intermediates"])
  assert y.shape == (3, 4, 3, 2)
  (index,) = state["intermediates"]["index"]
  np.testing.assert_array_equal(index, ops.polyphase_downsample(x, 2)[1])


def test_polyphase_downsample_layer_keeps_a_given_index():
  # A residual shortcut keeps the main path's phase: both sums stay aligned.
  main, shortcut = _random((2, 8, 8, 3), seed=12), _random((2, 8, 8, 3), seed=13)
  layer = layers.PolyphaseDownsample()
  y, state = layer.apply({}, main, mutable=["intermediates"])
  (index,) = state["intermediates"]["index"]
  z = layer.apply({}, shortcut, index)
  np.testing.assert_array_equal(z, np.asarray(ops.polyphase_components(shortcut, 2))[np.arange(2), index])


def test_polyphase_downsample_layer_errors():
  with pytest.raises(ValueError, match="divisible by the stride"):
    layers.PolyphaseDownsample().apply({}, _random((1, 7, 8, 2)))
  with pytest.raises(ValueError, match=r"channels last \(NWC, NHWC or NDHWC\), got shape \(8, 8\)"):
    layers.PolyphaseDownsample().apply({}, _random((8, 8)))
  with pytest.raises(TypeError, match="floating"):
    layers.BlurPool().apply({}, np.ones((1, 4, 4, 1), np.int32))


def test_blur_pool_on_a_map_smaller_than_the_filter_says_so():
  with pytest.raises(ValueError, match="filter_size=7"):
    layers.BlurPool(filter_size=7).apply({}, _random((1, 3, 3, 4)))


def test_circular_blur_pool_layer_commutes_with_even_shifts():
  fn = jax.jit(layers.BlurPool(filter_size=4, padding="CIRCULAR").apply, static_argnums=())
  x = _random((2, 8, 6, 3), seed=5)
  for shift in [(2, 0), (-4, 2), (6, 4)]:
    assert_shift_equivariant(lambda z: fn({}, z), x, shift, stride=2)


class CircularNet(nn.Module):
  """Circular convolutions, ReLU, a downsampling layer twice, global average pool, dense."""

  downsample: str = "aps"

  @nn.compact
  def __call__(self, x):
    for features in (8, 16):
      x = nn.relu(layers.Conv(features, (3, 3), padding="CIRCULAR", kernel_init=_flat_normal)(x))
      if self.downsample == "aps":
        x = layers.PolyphaseDownsample(strides=2)(x)
      elif self.downsample == "blur":
        x = layers.BlurPool(strides=2, padding="CIRCULAR")(x)
      else:
        x = x[:, ::2, ::2]
    x = layers.GlobalAvgPool()(x)
    return nn.Dense(3)(x)


_SHIFTS = [(1, 0), (0, 1), (1, 1), (3, -5), (-2, 7), (5, 3), (7, 7)]


def _train(model, variables, x, labels, steps=5):
  tx = optax.adam(1e-2)
  opt_state = tx.init(variables)

  @jax.jit
  def step(variables, opt_state):
    def loss_fn(v):
      logits = model.apply(v, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    loss, grads = jax.value_and_grad(loss_fn)(variables)
    updates, opt_state = tx.update(grads, opt_state, variables)
    return optax.apply_updates(variables, updates), opt_state, loss

  losses = []
  for _ in range(steps):
    variables, opt_state, loss = step(variables, opt_state)
    losses.append(float(loss))
  return variables, losses


def test_circular_aps_network_is_exactly_shift_invariant_before_and_after_training():
  model = CircularNet("aps")
  x = _random((16, 8, 8, 3), seed=6)
  labels = jnp.asarray(np.random.default_rng(7).integers(0, 3, 16))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  fn = jax.jit(lambda v, z: model.apply(v, z))
  for shift in _SHIFTS:
    # A few layers of reordered sums: the default rtol (1e-5 of max|f(x)|).
    assert_shift_invariant(lambda z: fn(variables, z), x, shift)
  trained, losses = _train(model, variables, x, labels)
  assert losses[-1] < losses[0]
  changed = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), trained, variables))
  assert max(changed) > 1e-3
  for shift in _SHIFTS:
    assert_shift_invariant(lambda z: fn(trained, z), x, shift)  # as above, trained weights
  # The total stride is 4, yet every shift is followed, not only multiples of 4.


@pytest.mark.parametrize("downsample", ["stride", "blur"])
def test_the_same_network_with_stride_or_blur_is_not_invariant_to_odd_shifts(downsample):
  model = CircularNet(downsample)
  x = _random((16, 8, 8, 3), seed=6)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  fn = jax.jit(lambda z: model.apply(variables, z))
  with pytest.raises(AssertionError, match="not shift-invariant"):
    assert_shift_invariant(fn, x, (1, 0))  # the default rtol, relative to max|f(x)|
  assert_shift_invariant(fn, x, (4, -4))  # multiples of the total stride are fine
