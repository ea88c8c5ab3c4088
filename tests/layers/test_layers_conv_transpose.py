"""ConvTranspose: parity with flax.linen, output sizes, the VJP of Conv, PyTorch's mapping."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.layers import (
    Conv,
    ConvTranspose,
    kernel_from_torch_conv_transpose,
    torch_conv_transpose_padding,
)
from testlib import assert_close
from testlib import normal as _normal
from testlib import random_variables as _variables

KEY = jax.random.key(0)


@pytest.mark.parametrize("padding, stride, dilation, transpose_kernel, kernel", [
    ("VALID", 1, 1, False, (3, 3)),
    ("VALID", 2, 1, True, (3, 3)),
    ("VALID", 3, 1, False, (1, 2)),
    ("SAME", 2, 1, False, (3, 3)),
    ("SAME", 2, 2, True, (2, 3)),
    ("SAME", 1, 2, False, (3, 3)),
    ("CIRCULAR", 2, 1, False, (3, 3)),
    ("CIRCULAR", 2, 1, True, (4, 4)),
    (((1, 2), (0, 1)), 2, 1, False, (3, 3)),
    (1, 2, 1, True, (3, 3)),
])
def test_conv_transpose_matches_flax(padding, stride, dilation, transpose_kernel, kernel):
  x = _normal((2, 5, 6, 3))
  kw = dict(features=4, kernel_size=kernel, strides=(stride, stride), padding=padding,
            kernel_dilation=(dilation, dilation), transpose_kernel=transpose_kernel)
  ref = nn.ConvTranspose(**kw)
  variables = _variables(ref, x)
  expected = ref.apply(variables, x)
  got = ConvTranspose(**kw).apply(variables, x)
  assert got.shape == expected.shape
  # Two summation orders of the same <= K*C_in = 81 products of O(1) values: rounding relative to the
  # largest output; a wrong tap or index moves outputs by O(max|y|).
  assert_close(got, expected, rtol=2e-5)


@pytest.mark.parametrize("kernel, strides", [((3,), (2,)), ((2, 3, 2), (2, 1, 2))])
def test_conv_transpose_matches_flax_1d_3d(kernel, strides):
  x = _normal((2, *(4,) * len(kernel), 3))
  for padding in ("VALID", "SAME"):
    kw = dict(features=2, kernel_size=kernel, strides=strides, padding=padding)
    variables = _variables(nn.ConvTranspose(**kw), x)
    # Two summation orders of the same <= K*C_in = 48 products of O(1) values: rounding relative to the
    # largest output; a wrong tap or index moves outputs by O(max|y|).
    assert_close(ConvTranspose(**kw).apply(variables, x),
                 nn.ConvTranspose(**kw).apply(variables, x), rtol=2e-5)


@pytest.mark.parametrize("kw, expected", [
    (dict(kernel_size=(3, 3), strides=(2, 2), padding="VALID"), (4, 57, 57, 1)),
    (dict(kernel_size=(3, 3), kernel_dilation=(2, 2), padding="VALID"), (4, 32, 32, 1)),
    (dict(kernel_size=(3, 3), strides=(2, 2), padding="SAME"), (4, 56, 56, 1)),
    (dict(kernel_size=(4, 4), strides=(3, 3), padding="CIRCULAR"), (4, 84, 84, 1)),
])
def test_conv_transpose_output_shape(kw, expected):
  x = jnp.ones((4, 28, 28, 12))
  y, variables = jax.eval_shape(ConvTranspose(features=1, **kw).init_with_output, KEY, x)
  assert y.shape == expected
  assert variables["params"]["kernel"].shape == (*kw["kernel_size"], 12, 1)
  assert expected[1:3] == ops.conv_transpose_output_shape(
      (28, 28), kw["kernel_size"], kw.get("strides"), kw["padding"], kw.get("kernel_dilation"))


@pytest.mark.parametrize("size, stride, dilation, padding", [
    (9, 2, 1, "VALID"),
    (10, 2, 1, "VALID"),  # (n - k) % s = 1: one trailing row with zero gradient
    (11, 3, 2, "VALID"),
    (8, 2, 1, "SAME"),
    (9, 3, 1, "SAME"),
    (7, 1, 2, "SAME"),
])
def test_conv_transpose_is_vjp_of_conv(size, stride, dilation, padding):
  """With transpose_kernel=True, ConvTranspose is the VJP of the strided Conv, same kernel."""
  kernel = _normal((3, 3, 2, 5), seed=3)
  x = _normal((2, size, size, 2), seed=4)
  conv = Conv(5, (3, 3), strides=stride, padding=padding, kernel_dilation=dilation, use_bias=False)
  y, vjp = jax.vjp(lambda v: conv.apply({"params": {"kernel": kernel}}, v), x)
  cotangent = _normal(y.shape, seed=5)
  (grad,) = vjp(cotangent)
  transpose = ConvTranspose(2, (3, 3), strides=(stride, stride), padding=padding,
                            kernel_dilation=(dilation, dilation), use_bias=False,
                            transpose_kernel=True)
  t = transpose.apply({"params": {"kernel": kernel}}, cotangent)
  extra = grad.shape[1] - t.shape[1]
  if padding == "VALID":
    assert extra == (size - (2 * dilation + 1)) % stride
  else:
    assert extra == 0
  # The VJP sums over output positions and channels in another order: relative to the largest.
  assert_close(t, grad[:, :t.shape[1], :t.shape[2]], rtol=2e-5)
  np.testing.assert_array_equal(grad[:, t.shape[1]:], 0.0)


def _torch_conv_transpose2d(x, weight, bias, stride, padding, output_padding, dilation):
  """PyTorch's ConvTranspose2d by its definition, NCHW: a scatter of every input pixel.

  out[o, i * s + a * d - p, j * s + b * d - p] += x[c, i, j] * W[c, o, a, b]
  """
  n, c_in, h, w = x.shape
  _, c_out, kh, kw = weight.shape
  ho = (h - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1
  wo = (w - 1) * stride - 2 * padding + dilation * (kw - 1) + output_padding + 1
  full = np.zeros((n, c_out, ho + 2 * padding + stride + dilation * kh,
                   wo + 2 * padding + stride + dilation * kw))
  for i, j, a, b in itertools.product(range(h), range(w), range(kh), range(kw)):
    full[:, :, i * stride + a * dilation, j * stride + b * dilation] += x[:, :, i, j] @ weight[:, :, a, b]
  out = full[:, :, padding:padding + ho, padding:padding + wo]
  return out + bias[None, :, None, None]


@pytest.mark.parametrize("stride, padding, output_padding, dilation", [
    (2, 0, 0, 1), (2, 1, 1, 1), (3, 1, 2, 1), (1, 2, 0, 2), (2, 2, 1, 2),
])
def test_conv_transpose_torch_mapping(stride, padding, output_padding, dilation):
  rng = np.random.RandomState(6)
  x_nchw = rng.standard_normal((2, 3, 5, 4))
  weight = rng.standard_normal((3, 4, 3, 3))  # torch: (C_in, C_out, kH, kW)
  bias = rng.standard_normal(4)
  expected = _torch_conv_transpose2d(x_nchw, weight, bias, stride, padding, output_padding, dilation)
  pads = torch_conv_transpose_padding((3, 3), padding, output_padding, dilation)
  x = jnp.asarray(np.moveaxis(x_nchw, 1, -1), jnp.float32)
  kernel = kernel_from_torch_conv_transpose(weight.astype(np.float32))
  layer = ConvTranspose(4, (3, 3), strides=(stride, stride), padding=pads,
                        kernel_dilation=(dilation, dilation), transpose_kernel=True)
  y = layer.apply({"params": {"kernel": kernel, "bias": jnp.asarray(bias, jnp.float32)}}, x)
  # float64 NumPy reference vs float32: rounding of 27-term sums of O(1) values, relative to max|y|.
  assert_close(np.moveaxis(np.asarray(y), -1, 1), expected, rtol=1e-5)
  # transpose_kernel=False: the torch weight flipped spatially, (kH, kW, C_in, C_out).
  flipped = jnp.asarray(np.flip(weight, (2, 3)).transpose(2, 3, 0, 1), jnp.float32)
  plain = ConvTranspose(4, (3, 3), strides=(stride, stride), padding=pads,
                        kernel_dilation=(dilation, dilation))
  y2 = plain.apply({"params": {"kernel": flipped, "bias": jnp.asarray(bias, jnp.float32)}}, x)
  # Two summation orders of the same <= 27 products of O(1) values: rounding relative to the
  # largest output; a wrong tap or index moves outputs by O(max|y|).
  assert_close(y2, y, rtol=1e-5)


def test_conv_transpose_matches_torch():
  torch = pytest.importorskip(
      "torch", reason="PyTorch is not a dependency; the mapping is also checked against "
                      "torch's definition in test_conv_transpose_torch_mapping")
  rng = np.random.RandomState(7)
  x_nchw = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
  module = torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, dilation=2)
  with torch.no_grad():
    expected = module(torch.from_numpy(x_nchw)).numpy()
  weight = module.weight.detach().numpy()
  layer = ConvTranspose(4, (3, 3), strides=(2, 2), kernel_dilation=(2, 2), transpose_kernel=True,
                        padding=torch_conv_transpose_padding((3, 3), 1, 1, 2))
  params = {"kernel": kernel_from_torch_conv_transpose(weight),
            "bias": jnp.asarray(module.bias.detach().numpy())}
  y = layer.apply({"params": params}, jnp.asarray(np.moveaxis(x_nchw, 1, -1)))
  # PyTorch's float32 kernel vs ours: two summation orders of 27 terms, relative to max|y|.
  assert_close(np.moveaxis(np.asarray(y), -1, 1), expected, rtol=1e-5)


def test_torch_padding_rejects_crop_beyond_kernel():
  with pytest.raises(ValueError, match="padding=3"):
    torch_conv_transpose_padding((3, 3), padding=3)


def test_conv_transpose_bf16():
  x = _normal((2, 4, 4, 3))
  layer = ConvTranspose(2, (3, 3), strides=(2, 2), dtype=jnp.bfloat16)
  variables = _variables(layer, x)
  y = layer.apply(variables, x)
  assert y.dtype == jnp.bfloat16
  np.testing.assert_allclose(y.astype(jnp.float32),
                             ConvTranspose(2, (3, 3), strides=(2, 2)).apply(variables, x),
                             # bfloat16 keeps 8 bits: 2**-8 relative per rounding, a few
                             # roundings per output of magnitude up to ~10.
                             rtol=0.05, atol=0.1)


def test_conv_transpose_errors():
  layer = ConvTranspose(8, (3, 3), strides=(2, 2))
  variables = _variables(layer, jnp.zeros((2, 16, 16, 3)))
  with pytest.raises(ValueError, match=r"expected NHWC.*3 channels.*looks channels-first \(NCHW"):
    layer.apply(variables, jnp.zeros((2, 3, 16, 16)))
  with pytest.raises(ValueError, match=r"rank 4.*got shape \(16, 16, 3\)"):
    layer.apply(variables, jnp.zeros((16, 16, 3)))
  transposed = ConvTranspose(8, (3, 3), transpose_kernel=True)
  variables = _variables(transposed, jnp.zeros((2, 16, 16, 5)))
  assert variables["params"]["kernel"].shape == (3, 3, 8, 5)
  with pytest.raises(ValueError, match=r"5 channels.*got shape \(2, 16, 16, 8\)"):
    transposed.apply(variables, jnp.zeros((2, 16, 16, 8)))
  with pytest.raises(ValueError, match="REFLECT"):
    jax.eval_shape(ConvTranspose(8, (3, 3), padding="REFLECT").init, KEY, jnp.zeros((1, 4, 4, 1)))
