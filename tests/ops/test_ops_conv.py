"""conv == conv_reference == conv_matmul, in values and gradients, plus golden values.

Tolerances (float32): every output is a sum of at most K * C_in / groups <= 54
products of standard-normal values. The three formulations add those products
in different orders, so they differ by rounding alone: about sqrt(terms) *
eps32 * |partial sums| ~ 1e-6 for these sizes. atol = rtol = 1e-5 leaves a
margin of ten while still catching any wrong index, which moves outputs by O(1).
"""

import functools

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings

from cnnjax import ops
from testlib import normal

ATOL = RTOL = 1e-5
IMPLS = (ops.conv, ops.conv_reference, ops.conv_matmul)


def _grid(values):
  return jnp.asarray(values, jnp.float32)[None, :, :, None]


def _kernel(values):
  return jnp.asarray(values, jnp.float32)[:, :, None, None]


# Golden values from the course material (TensorFlow's conv2d on the same input).
SQUARE = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_material_same_and_valid(impl):
  x, w = _grid(SQUARE), _kernel(SQUARE)
  same = impl(x, w, padding="SAME")[0, :, :, 0]
  valid = impl(x, w, padding="VALID")[0, :, :, 0]
  np.testing.assert_array_equal(same, [[94, 154, 106], [186, 285, 186], [106, 154, 94]])
  np.testing.assert_array_equal(valid, [[285]])


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_material_stride_skips_last_column(impl):
  # A 7x7 input whose last column is 99, an all-ones 3x3 kernel, stride 3,
  # VALID: windows start at 0 and 3, so column 6 is never read.
  image = np.ones((7, 7), np.float32)
  image[:, -1] = 99
  y = impl(_grid(image), jnp.ones((3, 3, 1, 1)), strides=3, padding="VALID")
  assert y.shape == (1, 2, 2, 1)
  np.testing.assert_array_equal(y[0, :, :, 0], np.full((2, 2), 9.0))


@pytest.mark.parametrize(
    "kernel_shape, kwargs, expected",
    [
        ((3, 3, 12, 10), {}, (4, 26, 26, 10)),
        ((2, 3, 12, 1), {}, (4, 27, 26, 1)),
        ((2, 2, 12, 1), {"strides": (2, 3)}, (4, 14, 9, 1)),
        ((2, 2, 12, 1), {"padding": "SAME"}, (4, 28, 28, 1)),
        ((3, 3, 12, 1), {"rhs_dilation": 4}, (4, 20, 20, 1)),
        ((2, 2, 4, 6), {"feature_group_count": 3}, (4, 27, 27, 6)),
    ],
)
def test_keras_output_shapes(kernel_shape, kwargs, expected):
  # The Keras examples of the material on a (4, 28, 28, 12) input; shapes only,
  # so jax.eval_shape computes them without running the convolution.
  x = jax.ShapeDtypeStruct((4, 28, 28, 12), jnp.float32)
  w = jax.ShapeDtypeStruct(kernel_shape, jnp.float32)
  y = jax.eval_shape(functools.partial(ops.conv, **kwargs), x, w)
  assert y.shape == expected
  spatial = ops.conv_output_shape(
      (28, 28), kernel_shape[:2], kwargs.get("strides"), kwargs.get("padding", "VALID"),
      kwargs.get("rhs_dilation"))
  assert (4, *spatial, kernel_shape[-1]) == expected


def test_grouped_kernel_shape():
  # groups=3 with 6 filters of size 2 on 12 channels: kernel (2, 2, 12/3, 6).
  x = jnp.ones((1, 5, 5, 12))
  w = jnp.ones((2, 2, 4, 6))
  y = ops.conv(x, w, feature_group_count=3)
  assert y.shape == (1, 4, 4, 6)
  # Each output channel sums 2*2*4 ones of its own group.
  np.testing.assert_array_equal(y, np.full((1, 4, 4, 6), 16.0))


def test_groups_do_not_mix_channels():
  # Output group g must depend only on input group g.
  x = np.zeros((1, 4, 4, 6), np.float32)
  x[..., 2:4] = 1.0  # only group 1 of 3 is non-zero
  w = jnp.ones((3, 3, 2, 3))
  for impl in IMPLS:
    y = np.asarray(impl(jnp.asarray(x), w, padding="SAME", feature_group_count=3))
    assert np.all(y[..., 0] == 0) and np.all(y[..., 2] == 0)
    assert np.all(y[..., 1] > 0)


def test_causal_sees_only_the_past():
  x = jnp.zeros((1, 8, 1)).at[0, 5, 0].set(1.0)
  w = jnp.ones((3, 1, 1))
  for impl in IMPLS:
    y = impl(x, w, padding="CAUSAL", rhs_dilation=2)
    assert y.shape == (1, 8, 1)
    # An impulse at t=5 reaches t=5, 7 (and 9, out of range), never t<5.
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(y[0, :, 0])), [5, 7])


def test_circular_wraps_and_reflect_mirrors():
  x = jnp.arange(1.0, 6.0).reshape(1, 5, 1)
  w = jnp.array([1.0, 0.0, 0.0]).reshape(3, 1, 1)  # picks the left neighbour
  for impl in IMPLS:
    np.testing.assert_array_equal(impl(x, w, padding="CIRCULAR")[0, :, 0], [5, 1, 2, 3, 4])
    np.testing.assert_array_equal(impl(x, w, padding="REFLECT")[0, :, 0], [2, 1, 2, 3, 4])
    np.testing.assert_array_equal(impl(x, w, padding="SAME")[0, :, 0], [0, 1, 2, 3, 4])


def test_input_dilation_inserts_zeros():
  x = jnp.array([1.0, 2.0, 3.0]).reshape(1, 3, 1)
  w = jnp.ones((1, 1, 1))
  for impl in IMPLS:
    np.testing.assert_array_equal(impl(x, w, lhs_dilation=2)[0, :, 0], [1, 0, 2, 0, 3])


# --- Properties over drawn configurations ---------------------------------


@st.composite
def conv_cases(draw, max_work=120):
  """A random valid convolution: rank 1-3, groups, even/odd kernels, all paddings.

  ``max_work`` bounds output positions x kernel taps, the number of steps of
  the loop reference, so that a case runs in well under a second.
  """
  rank = draw(st.sampled_from([1, 2, 2, 3]))
  max_k, max_n = (3, 5) if rank == 3 else (4, 7)
  groups = draw(st.integers(1, 3))
  c_in_g, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
  kernel = tuple(draw(st.integers(1, max_k)) for _ in range(rank))
  strides = tuple(draw(st.integers(1, 3)) for _ in range(rank))
  lhs = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(rank))
  rhs = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(rank))
  spatial = tuple(draw(st.integers(1, max_n)) for _ in range(rank))
  modes = ["VALID", "SAME", "CIRCULAR", "REFLECT", "explicit"] + (["CAUSAL"] if rank == 1 else [])
  padding = draw(st.sampled_from(modes))
  if padding == "explicit":
    padding = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(rank))
  try:
    out = ops.conv_output_shape(spatial, kernel, strides, padding, rhs, lhs)
  except ValueError:  # e.g. a reflect pad wider than the input
    assume(False)
  assume(min(out) >= 1)
  assume(np.prod(out) * np.prod(kernel) <= max_work)
  batch = draw(st.integers(1, 2))
  seed = draw(st.integers(0, 2**16))
  return dict(
      x_shape=(batch, *spatial, c_in_g * groups), w_shape=(*kernel, c_in_g, c_out_g * groups),
      kwargs=dict(strides=strides, padding=padding, lhs_dilation=lhs, rhs_dilation=rhs,
                  feature_group_count=groups),
      use_bias=draw(st.booleans()), seed=seed, out=out)


def _operands(case):
  """``x``, ``w``, ``b`` (or ``None``) from ``N(0, 1)``, and the generator for more draws."""
  rng = np.random.default_rng(case["seed"])
  x, w = normal(case["x_shape"], rng), normal(case["w_shape"], rng)
  b = normal(case["w_shape"][-1:], rng) if case["use_bias"] else None
  return x, w, b, rng


def _compiled(impl, case):
  # One compiled program per drawn case: every case has its own shapes, and
  # one program compiles faster than the loop reference's hundreds of
  # eagerly dispatched (each separately compiled) indexing and einsum ops.
  return jax.jit(functools.partial(impl, **case["kwargs"]))


@given(conv_cases())
def test_three_formulations_agree_in_values(case):
  x, w, b, _ = _operands(case)
  expected = _compiled(ops.conv_reference, case)(x, w, b)
  assert expected.shape == (case["x_shape"][0], *case["out"], case["w_shape"][-1])
  for impl in (ops.conv, ops.conv_matmul):
    np.testing.assert_allclose(_compiled(impl, case)(x, w, b), expected, atol=ATOL, rtol=RTOL,
                               err_msg=impl.__name__)


@pytest.mark.slow
@settings(max_examples=20)
@given(conv_cases(max_work=40))
def test_three_formulations_agree_in_gradients(case):
  x, w, b, rng = _operands(case)
  if b is None:
    b = jnp.zeros((case["w_shape"][-1],))
  out_shape = (case["x_shape"][0], *case["out"], case["w_shape"][-1])
  cotangent = normal(out_shape, rng)

  def grads(impl):
    loss = lambda x, w, b: jnp.sum(impl(x, w, b, **case["kwargs"]) * cotangent)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, w, b)

  expected = grads(ops.conv_reference)
  for impl in (ops.conv, ops.conv_matmul):
    for got, want, name in zip(grads(impl), expected, ("d/dx", "d/dw", "d/db")):
      np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL, err_msg=f"{impl.__name__} {name}")


@given(conv_cases())
def test_output_shape_matches_arithmetic(case):
  x = jax.ShapeDtypeStruct(case["x_shape"], jnp.float32)
  w = jax.ShapeDtypeStruct(case["w_shape"], jnp.float32)
  y = jax.eval_shape(functools.partial(ops.conv, **case["kwargs"]), x, w)
  assert y.shape[1:-1] == case["out"]


def test_bfloat16_inputs_compute_in_bfloat16():
  x = jnp.ones((1, 6, 6, 2), jnp.bfloat16)
  w = jnp.ones((3, 3, 2, 4), jnp.bfloat16)
  for impl in IMPLS:
    y = impl(x, w, padding="SAME")
    assert y.dtype == jnp.bfloat16
    assert float(y[0, 2, 2, 0]) == 18.0
