"""DeformableConv2D: equal to Conv at zero offsets, known offsets, gradients, sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.layers import Conv, DeformableConv2D, bilinear_sample
from testlib import assert_close
from testlib import normal as _normal
from testlib import random_variables

KEY = jax.random.key(0)


def _variables(layer, x, seed=2):
  """Random kernel and bias; the offset convolution keeps its zero initialisation."""
  return random_variables(layer, x, seed, zero=("offset",))


@pytest.mark.parametrize("stride, padding, dilation", [
    (1, "SAME", 1), (2, "SAME", 1), (1, "VALID", 1), (2, "VALID", 1),
    (1, "SAME", 2), (2, "CIRCULAR", 1), (1, ((2, 0), (1, 1)), 1),
])
def test_zero_offsets_equal_conv(stride, padding, dilation):
  x = _normal((2, 7, 6, 3))
  kw = dict(features=4, kernel_size=(3, 3), strides=stride, padding=padding, kernel_dilation=dilation)
  layer = DeformableConv2D(**kw)
  variables = _variables(layer, x)
  assert jax.tree.map(jnp.shape, variables["params"]["offset"]) == {"kernel": (3, 3, 3, 18), "bias": (18,)}
  y = jax.jit(layer.apply)(variables, x)
  conv_params = {k: v for k, v in variables["params"].items() if k != "offset"}
  expected = Conv(**kw).apply({"params": conv_params}, x)
  assert y.shape == expected.shape
  # Zero offsets sample the grid exactly; 27-term sums in two orders: relative to the largest output (a wrong tap moves outputs by O(max|y|)).
  assert_close(y, expected, rtol=1e-5)


def test_default_init_starts_as_conv():
  x = _normal((1, 5, 5, 2))
  layer = DeformableConv2D(3, (3, 3))
  y, variables = jax.jit(layer.init_with_output)(KEY, x)
  np.testing.assert_array_equal(variables["params"]["offset"]["kernel"], 0.0)
  conv = {k: v for k, v in variables["params"].items() if k != "offset"}
  # Zero offsets at init, 27-term sums in two orders: relative to the largest output (a wrong tap moves outputs by O(max|y|)).
  assert_close(y, Conv(3, (3, 3)).apply({"params": conv}, x), rtol=1e-5)


def _with_offset(variables, dy, dx):
  """Offsets constant over the image: dy for every tap on even channels, dx on odd."""
  bias = jnp.zeros(variables["params"]["offset"]["bias"].shape).at[0::2].set(dy).at[1::2].set(dx)
  offset = {"kernel": variables["params"]["offset"]["kernel"], "bias": bias}
  return {"params": {**variables["params"], "offset": offset}}


def test_integer_offset_equals_conv_of_shifted_image():
  x = _normal((2, 6, 8, 3))
  layer = DeformableConv2D(4, (3, 3), padding="SAME")
  variables = _with_offset(_variables(layer, x), 0.0, 1.0)
  y = jax.jit(layer.apply)(variables, x)
  conv_params = {k: v for k, v in variables["params"].items() if k != "offset"}
  shifted = jnp.roll(x, -1, axis=2)  # shifted[:, i, j] = x[:, i, j + 1]
  expected = Conv(4, (3, 3)).apply({"params": conv_params}, shifted)
  # Interior columns: neither side reads beyond the image or the wrapped column.
  # Integer offsets sample exactly; 27-term sums in two orders: relative to the largest output (a wrong tap moves outputs by O(max|y|)).
  assert_close(y[:, :, 1:-2], expected[:, :, 1:-2], rtol=1e-5)
  assert not np.allclose(y[:, :, -1], expected[:, :, -1])


def test_half_pixel_offset_interpolates():
  x = _normal((1, 6, 6, 2))
  layer = DeformableConv2D(3, (3, 3), padding="VALID", use_bias=False)
  variables = _variables(layer, x)
  conv = Conv(3, (3, 3), padding="VALID", use_bias=False)
  kernel = {"params": {"kernel": variables["params"]["kernel"]}}
  y = jax.jit(layer.apply)(_with_offset(variables, 0.5, 0.0), x)
  # Linear in the input: half of the conv at rows i and i + 1 (the last row reads zeros below).
  below = jnp.concatenate([x[:, 1:], jnp.zeros_like(x[:, :1])], axis=1)
  expected = 0.5 * (conv.apply(kernel, x) + conv.apply(kernel, below))
  # Half-pixel offsets: weights 0.5 exact in float32, two summation orders: relative to the largest output (a wrong tap moves outputs by O(max|y|)).
  assert_close(y, expected, rtol=1e-5)


def test_gradients_reach_the_offset_convolution():
  x = _normal((2, 6, 6, 3))
  layer = DeformableConv2D(4, (3, 3), strides=2)

  def loss(params):
    return jnp.sum(layer.apply({"params": params}, x) ** 2)

  grad = jax.jit(jax.grad(loss))
  params = _variables(layer, x)["params"]
  grads = grad(params)
  for name in ("kernel", "bias"):
    g = grads["offset"][name]
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(g).max()) > 1e-3, name
  # Against central differences of one offset-bias entry (the dx of tap 1), at a
  # fractional offset where bilinear sampling is smooth (it has kinks at integers).
  params = _with_offset({"params": params}, 0.3, -0.2)["params"]
  grads = grad(params)
  eps = 1e-2

  def shifted(delta):
    bias = params["offset"]["bias"].at[3].add(delta)
    return loss({**params, "offset": {**params["offset"], "bias": bias}})

  fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
  # A central difference (eps=1e-2) has O(eps^2 f''') truncation and eps32 |loss| / eps
  # cancellation error: 2% relative plus 0.05 on a derivative of O(1-10) still rejects a
  # wrong sign or a missing term.
  np.testing.assert_allclose(grads["offset"]["bias"][3], fd, rtol=0.02, atol=0.05)


def test_bilinear_sample():
  image = jnp.arange(2 * 3 * 4 * 1, dtype=jnp.float32).reshape(2, 3, 4, 1)
  y = jnp.array([[0.0, 1.0, 2.0, 0.5, -1.0, 1.0]] * 2)
  x = jnp.array([[0.0, 3.0, 1.0, 0.0, 0.0, 3.5]] * 2)
  out = bilinear_sample(image, y, x)[..., 0]
  expected = np.array([[0, 7, 9, 2, 0, 0.5 * 7], [12, 19, 21, 14, 0, 0.5 * 19]])
  # Bilinear weights of 0, 0.5, 1 on small integers: exact up to a few eps32 relative.
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_deformable_bf16_and_errors():
  x = _normal((1, 5, 5, 2))
  layer = DeformableConv2D(3, 3, dtype=jnp.bfloat16)
  variables = _variables(layer, x)
  assert variables["params"]["kernel"].shape == (3, 3, 2, 3)
  assert jax.jit(layer.apply)(variables, x).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"expected NHWC.*2 channels.*looks channels-first \(NCHW"):
    layer.apply(variables, jnp.zeros((1, 2, 5, 5)))
  with pytest.raises(ValueError, match=r"rank 4.*\(5, 5, 2\)"):
    layer.apply(variables, jnp.zeros((5, 5, 2)))
  with pytest.raises(ValueError, match="kernel_size"):
    jax.eval_shape(DeformableConv2D(3, (3, 3, 3)).init, KEY, x)
