"""Polyphase up-sampling: inverse of APS's choice, interpolation on the chosen grid."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import layers
from cnnjax.ops import antialias, upsample


@pytest.fixture(scope="module")
def x():
  return jax.random.normal(jax.random.key(0), (4, 3, 5, 2))


def test_upsample_puts_the_map_back_on_the_component_aps_would_read(x):
  index = jnp.array([0, 1, 2, 3], jnp.int32)
  z = upsample.polyphase_upsample(x, index, 2)
  assert z.shape == (4, 6, 10, 2)
  y, _ = antialias.polyphase_downsample(z, 2, index=index)
  np.testing.assert_array_equal(y, x)
  # Every other component is zero.
  components = antialias.polyphase_components(z, 2)
  for n in range(4):
    others = np.delete(np.asarray(components[n]), int(index[n]), axis=0)
    assert not others.any()


@pytest.mark.parametrize("method", ["zeros", "nearest", "linear"])
def test_a_phase_is_a_roll_of_phase_zero(x, method):
  # Component (a, b) = roll of component 0 by (a, b): the decoder follows the encoder's grid.
  base = upsample.interpolate_on_grid(upsample.polyphase_upsample(x, None, 2), 2, method)
  for k, (a, b) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
    index = jnp.full((4,), k, jnp.int32)
    got = upsample.interpolate_on_grid(upsample.polyphase_upsample(x, index, 2), 2, method)
    np.testing.assert_array_equal(got, jnp.roll(base, (a, b), axis=(1, 2)))


def test_nearest_and_linear_interpolation_values(x):
  z = upsample.polyphase_upsample(x, None, 2)
  nearest = upsample.interpolate_on_grid(z, 2, "nearest")
  np.testing.assert_array_equal(nearest, jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))
  linear = upsample.interpolate_on_grid(z, 2, "linear")
  # Samples are kept; between two samples along W lies their mean (circular wrap at the end).
  np.testing.assert_array_equal(linear[:, ::2, ::2], x)
  mean = (x + jnp.roll(x, -1, axis=2)) / 2
  # Two float32 products summed: within a few ulps of the values' magnitude.
  np.testing.assert_allclose(linear[:, ::2, 1::2], mean, rtol=1e-6, atol=1e-6 * float(jnp.abs(x).max()))
  # Zero fill instead of wrapping at the border.
  edge = upsample.interpolate_on_grid(z, 2, "linear", circular=False)
  np.testing.assert_allclose(edge[:, ::2, -1], x[:, :, -1] / 2, rtol=1e-6)


def test_layer_and_errors(x):
  layer = layers.PolyphaseUpsample(strides=2, interpolation="nearest")
  y = layer.apply({}, x, jnp.zeros((4,), jnp.int32))
  assert y.shape == (4, 6, 10, 2)
  with pytest.raises(ValueError, match=r"index must be an int array of shape \(N,\) = \(4,\)"):
    upsample.polyphase_upsample(x, jnp.zeros((3,), jnp.int32))
  with pytest.raises(ValueError, match="method must be one of"):
    upsample.interpolate_on_grid(x, 2, "cubic")
  with pytest.raises(ValueError, match="channels last"):
    upsample.polyphase_upsample(x[0], None)
