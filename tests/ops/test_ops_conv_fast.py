"""``ops.conv``'s CPU formulations ('subpixel', 'taps', 'per_group') equal ``conv_reference``.

Values and gradients (input and kernel) over transposed, depthwise and grouped
cases in 1-D, 2-D and 3-D, with strides, dilations, padding modes, channel
multipliers and group counts; the sub-pixel formulation's gradients contain
no input-dilated convolution; forward mode works through every formulation.
The depthwise tap sum, a primitive of its own: its kernel gradient is one
reduction, summed in float32 for bfloat16; second-order gradients, ``vmap``
and ``shard_map`` agree with ``lax``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.ops import conv_fast
from testlib import equations, normal, primitives

# Float32 rounding grows at most linearly with the number of products summed
# into one value; 4 * eps per term, scaled by the largest value compared.
_EPS = float(np.finfo(np.float32).eps)


def _assert_close(actual, expected, terms):
  expected = np.asarray(expected)
  scale = max(float(np.max(np.abs(expected))), 1.0)
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=0, atol=4 * _EPS * terms * scale)


# (name, x shape, kernel shape, conv keywords, lowerings that compute it).
CASES = [
    ("transposed k3 s2", (2, 2, 2, 3), (3, 3, 3, 2), dict(padding=((1, 2), (1, 2)), lhs_dilation=2),
     ("subpixel",)),
    ("transposed k4 s2", (1, 2, 2, 2), (4, 4, 2, 3), dict(padding=((1, 2), (1, 2)), lhs_dilation=2),
     ("subpixel",)),
    ("transposed s(3,2) dilated kernel", (1, 2, 2, 2), (3, 2, 2, 2),
     dict(padding=((1, 1), (2, 1)), lhs_dilation=(3, 2), rhs_dilation=(2, 3)), ("subpixel",)),
    ("transposed s2 d2: phases without taps", (1, 2, 3, 2), (3, 3, 2, 2),
     dict(padding=((2, 2), (1, 2)), lhs_dilation=2, rhs_dilation=2), ("subpixel",)),
    ("transposed grouped", (1, 2, 2, 4), (3, 3, 2, 4), dict(padding=1, lhs_dilation=2, feature_group_count=2),
     ("subpixel",)),
    ("transposed 1-D SAME", (2, 5, 3), (4, 3, 2), dict(padding="SAME", lhs_dilation=3), ("subpixel",)),
    # Nine examples: the phase convolutions run in chunks (of PHASE_MIN_CHUNK = 8, then 1),
    # each on an input padded beforehand (the pads exceed the 2x2 phase kernels' reach).
    ("transposed k4 s2 chunked phases", (9, 2, 2, 2), (4, 4, 2, 3),
     dict(padding=((2, 3), (2, 3)), lhs_dilation=2), ("subpixel",)),
    # 3x3 stride 2, nine examples: 2x2, 2x1 and 1x2 phase kernels (chunked convolutions)
    # and a 1x1 one (a matrix product).
    ("transposed k3 s2 chunked and product phases", (9, 3, 3, 2), (3, 3, 2, 3),
     dict(padding=((1, 2), (1, 2)), lhs_dilation=2), ("subpixel",)),
    # Every phase kernel is 1x1: each phase is a matrix product.
    ("transposed k2 s2 1x1 phases", (2, 3, 3, 2), (2, 2, 2, 3),
     dict(padding=((1, 1), (1, 1)), lhs_dilation=2), ("subpixel",)),
    ("transposed 3-D", (1, 2, 2, 2, 2), (2, 2, 2, 2, 2), dict(padding=((1, 0), (0, 0), (0, 1)), lhs_dilation=(2, 1, 2)),
     ("subpixel",)),
    ("depthwise", (2, 3, 4, 4), (3, 3, 1, 4), dict(padding=1, feature_group_count=4), ("taps", "per_group")),
    ("depthwise s2 multiplier 2", (2, 5, 4, 3), (3, 3, 1, 6), dict(padding="SAME", strides=2, feature_group_count=3),
     ("taps",)),
    ("depthwise dilated CIRCULAR", (1, 4, 4, 2), (2, 2, 1, 2),
     dict(padding="CIRCULAR", rhs_dilation=2, feature_group_count=2), ("taps",)),
    ("depthwise 1-D CAUSAL", (2, 9, 3), (3, 1, 3), dict(padding="CAUSAL", feature_group_count=3), ("taps",)),
    ("depthwise 3-D REFLECT", (1, 2, 3, 3, 2), (2, 2, 2, 1, 2),
     dict(padding="REFLECT", strides=(1, 2, 1), feature_group_count=2), ("taps",)),
    # Zeros past the kernel's reach: the corner taps of the outer outputs read only zeros.
    ("depthwise padded past reach", (2, 3, 4, 2), (3, 3, 1, 4),
     dict(padding=((3, 2), (0, 4)), strides=(2, 1), feature_group_count=2), ("taps",)),
    ("grouped 2 groups", (1, 3, 4, 4), (3, 3, 2, 6), dict(padding=1, feature_group_count=2), ("per_group", "taps")),
    ("grouped 3 groups s2 dilated", (2, 8, 7, 6), (3, 2, 2, 3),
     dict(padding="VALID", strides=(2, 1), rhs_dilation=(1, 2), feature_group_count=3), ("per_group",)),
    ("grouped 1-D", (2, 7, 4), (3, 2, 4), dict(padding=2, feature_group_count=2), ("per_group",)),
    ("dense strided", (2, 5, 5, 3), (3, 3, 3, 4), dict(padding=1, strides=2), ("taps",)),
]


def _operands(case, seed=0):
  """``x`` and ``w`` from ``N(0, 1)``, and the generator for more draws."""
  _, xs, ws, _, _ = case
  rng = np.random.default_rng(seed)
  return normal(xs, rng), normal(ws, rng), rng


def _terms(case):
  """Products summed into one value of the output, or of either gradient (an upper bound)."""
  _, xs, ws, _, _ = case
  per_output = int(np.prod(ws[:-1]))
  return max(per_output * ws[-1], int(np.prod(xs[:-1])) * 4)


_DIRECTIONS = 1


@functools.cache
def _reference(index):
  """``conv_reference``'s output for ``CASES[index]`` and its gradients projected on random directions.

  The convolution is linear in the input and in the kernel, so for a loss
  ``<conv(x, w), g>`` and any direction ``v``: ``<v, dL/dx> = <conv(v, w), g>``
  and ``<v, dL/dw> = <conv(x, v), g>``. A random direction each checks the
  gradients with forward calls of the reference only (its own reverse pass,
  thousands of small ops, takes minutes), computed once per module run.
  """
  case = CASES[index]
  x, w, rng = _operands(case)
  # One compiled program for the three calls (all of one shape), rather than the
  # loop reference's hundreds of eagerly dispatched, separately compiled ops.
  fn = jax.jit(functools.partial(ops.conv_reference, **case[3]))
  y = fn(x, w)
  g = normal(y.shape, rng)
  directions = np.random.default_rng(7)
  vxs = [normal(x.shape, directions) for _ in range(_DIRECTIONS)]
  vws = [normal(w.shape, directions) for _ in range(_DIRECTIONS)]
  px = [float(jnp.vdot(fn(v, w), g)) for v in vxs]
  pw = [float(jnp.vdot(fn(x, v), g)) for v in vws]
  return y, g, vxs, vws, px, pw


@functools.cache
def _lax_gradients(index):
  case = CASES[index]
  x, w, _ = _operands(case)
  g = _reference(index)[1]
  return jax.jit(lambda x, w, g: jax.vjp(
      lambda x, w: ops.conv(x, w, lowering="lax", **case[3]), x, w)[1](g))(x, w, g)


def _assert_projection(v, grad, expected, terms):
  # The bound on the rounding of an inner product scales with the sum of |terms|.
  scale = max(float(jnp.vdot(jnp.abs(v), jnp.abs(grad))), 1.0)
  assert abs(float(jnp.vdot(v, grad)) - expected) <= 4 * _EPS * terms * scale


_PARAMS = [pytest.param(i, lowering, id=f"{case[0]}-{lowering}")
           for i, case in enumerate(CASES) for lowering in case[4]]


@pytest.mark.parametrize("index, lowering", _PARAMS)
def test_formulation_equals_reference(index, lowering):
  case = CASES[index]
  x, w, _ = _operands(case)
  y_ref, g, vxs, vws, px, pw = _reference(index)

  @jax.jit
  def forward_and_gradients(x, w, g):
    y, vjp = jax.vjp(lambda x, w: ops.conv(x, w, lowering=lowering, **case[3]), x, w)
    return y, *vjp(g)

  y, dx, dw = forward_and_gradients(x, w, g)
  terms = _terms(case)
  assert y.shape == y_ref.shape
  _assert_close(y, y_ref, terms)
  for v, p in zip(vxs, px):
    _assert_projection(v, dx, p, terms * x.size)
  for v, p in zip(vws, pw):
    _assert_projection(v, dw, p, terms * w.size)
  # Whole gradients against lax's (itself held to the reference in test_ops_conv.py).
  dx_lax, dw_lax = _lax_gradients(index)
  _assert_close(dx, dx_lax, terms)
  _assert_close(dw, dw_lax, terms)


def _conv_lhs_dilations(jaxpr):
  """The ``lhs_dilation`` of every convolution in a jaxpr, nested jaxprs included."""
  return [tuple(e.params["lhs_dilation"]) for e in equations(jaxpr)
          if e.primitive.name == "conv_general_dilated"]


def test_subpixel_gradients_have_no_input_dilation():
  x, w = jnp.ones((2, 5, 5, 3)), jnp.ones((4, 4, 3, 2))
  kwargs = dict(padding=((2, 3), (2, 3)), lhs_dilation=2)

  def loss(lowering, x, w):
    return jnp.sum(jnp.sin(ops.conv(x, w, lowering=lowering, **kwargs)))

  for lowering in ("subpixel", "auto"):
    jaxpr = jax.make_jaxpr(jax.grad(functools.partial(loss, lowering), argnums=(0, 1)))(x, w).jaxpr
    assert all(d == (1, 1) for d in _conv_lhs_dilations(jaxpr)), lowering
  # The check can fail: lax's own transposed convolution dilates its input.
  lax_jaxpr = jax.make_jaxpr(jax.grad(functools.partial(loss, "lax"), argnums=(0, 1)))(x, w).jaxpr
  assert (2, 2) in _conv_lhs_dilations(lax_jaxpr)


def test_depthwise_taps_has_no_convolution():
  x, w = jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 1, 4))
  fn = jax.grad(lambda x, w: jnp.sum(ops.conv(x, w, padding=1, feature_group_count=4, lowering="taps")),
                argnums=(0, 1))
  assert _conv_lhs_dilations(jax.make_jaxpr(fn)(x, w).jaxpr) == []


def _case(name):
  """The case called ``name`` (looked up by name, so that new cases may go anywhere)."""
  return next(case for case in CASES if case[0] == name)


@pytest.mark.parametrize("lowering, name", [
    ("subpixel", "transposed k3 s2"), ("taps", "depthwise s2 multiplier 2"),
    ("taps", "depthwise 3-D REFLECT"), ("per_group", "grouped 3 groups s2 dilated")])
def test_forward_mode_equals_reverse_mode(lowering, name):
  # <J v, g> == <v, J^T g> for the input and kernel tangents together.
  case = _case(name)
  x, w, rng = _operands(case)
  vx, vw = normal(x.shape, np.random.default_rng(3)), normal(w.shape, np.random.default_rng(4))
  fn = lambda x, w: ops.conv(x, w, lowering=lowering, **case[3])  # noqa: E731
  y_shape = jax.eval_shape(fn, x, w).shape
  g = normal(y_shape, rng)

  @jax.jit
  def both_sides(x, w, vx, vw, g):
    _, jv = jax.jvp(fn, (x, w), (vx, vw))
    dx, dw = jax.vjp(fn, x, w)[1](g)
    return jnp.vdot(jv, g), jnp.vdot(vx, dx) + jnp.vdot(vw, dw)

  lhs, rhs = both_sides(x, w, vx, vw, g)
  terms = _terms(case) * int(np.prod(y_shape))
  assert abs(float(lhs - rhs)) <= 4 * _EPS * terms * max(abs(float(rhs)), 1.0)


def _taps(case):
  return lambda x, w: ops.conv(x, w, lowering="taps", **case[3])  # noqa: E731


@pytest.mark.parametrize("name", [case[0] for case in CASES if "taps" in case[4] and case[0].startswith("depthwise")])
def test_depthwise_padding_per_tap_equals_padding_once(name, monkeypatch):
  # A padded input of PAD_PER_TAP_BYTES or more is not made: each tap pads the window it
  # reads (glibc maps and page-faults a buffer of 32 MiB or more on every call). The two
  # forms add the same products; XLA fuses them differently, so they agree to rounding.
  case = _case(name)
  x, w, rng = _operands(case)
  g = normal(jax.eval_shape(_taps(case), x, w).shape, rng)

  def everything(x, w, g):
    y, vjp = jax.vjp(_taps(case), x, w)
    dx, dw = vjp(g)
    # Second order: the kernel gradient of a function of the input gradient.
    ddw = jax.grad(lambda w: jnp.sum(jnp.sin(jax.vjp(lambda x: _taps(case)(x, w), x)[1](g)[0])))(w)
    return y, dx, dw, ddw

  def operand_shapes():  # The shapes the tap-sum primitive reads, in the forward pass.
    jaxpr = jax.make_jaxpr(_taps(case))(x, w).jaxpr
    return [e.invars[0].aval.shape for e in equations(jaxpr) if e.primitive.name == "cnnjax_depthwise_taps"]

  once, once_shapes = jax.jit(everything)(x, w, g), operand_shapes()
  jax.clear_caches()  # ops.conv's traces were made under the other rule.
  monkeypatch.setattr(conv_fast, "PAD_PER_TAP_BYTES", 0)
  per_tap, per_tap_shapes = jax.jit(everything)(x, w, g), operand_shapes()
  jax.clear_caches()
  # Padded beforehand, the primitive reads a larger array; per tap, the input itself
  # (REFLECT and CIRCULAR pad their own way first, so both read the same array there).
  assert per_tap_shapes and all(tuple(s) == tuple(x.shape) or name.endswith(("REFLECT", "CIRCULAR"))
                                for s in per_tap_shapes)
  if name.endswith("past reach"):
    assert all(np.prod(s) > x.size for s in once_shapes)
  for a, b in zip(per_tap, once):
    _assert_close(a, b, _terms(case))


def test_depthwise_kernel_gradient_is_one_reduction():
  # The kernel gradient of every tap comes from one variadic reduction over the examples
  # and output positions (one read of the input and the output gradient), not one
  # reduction per tap (nine passes over both for a 3x3 kernel).
  for name, taps in (("depthwise", 9), ("depthwise s2 multiplier 2", 9), ("depthwise 3-D REFLECT", 8)):
    case = _case(name)
    x, w, _ = _operands(case)
    grad = jax.grad(lambda w, x: jnp.sum(jnp.sin(_taps(case)(x, w))))
    eqns = list(equations(jax.make_jaxpr(grad)(w, x).jaxpr))
    reductions = [e for e in eqns if e.primitive.name == "reduce"]
    assert [len(e.outvars) for e in reductions] == [taps], name
    # Its operands pass an optimization barrier: XLA would otherwise fold it at compile
    # time when they are constants (a jitted closure), which takes seconds to minutes.
    assert any(e.primitive.name == "optimization_barrier" for e in eqns), name


def _plain_tap_sum(x, w, strides, pads):
  """The depthwise tap sum as plain ``jnp`` operations (what ``jax.grad`` differentiated
  before the primitive): 2-D, undilated, ``w`` ``(kh, kw, 1, C * m)``."""
  c, m = x.shape[-1], w.shape[-1] // x.shape[-1]
  image = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  out = [(image.shape[1 + a] - w.shape[a]) // strides[a] + 1 for a in range(2)]
  acc = None
  for i in range(w.shape[0]):
    for j in range(w.shape[1]):
      tap = image[:, i:i + (out[0] - 1) * strides[0] + 1:strides[0],
                  j:j + (out[1] - 1) * strides[1] + 1:strides[1]]
      term = tap[..., None] * w[i, j, 0].reshape(c, m)
      acc = term if acc is None else acc + term
  return acc.reshape(*acc.shape[:-2], c * m)


@pytest.mark.parametrize("strides, multiplier, k", [((1, 1), 1, 3), ((2, 1), 2, 5)])
def test_depthwise_forward_and_input_gradient_equal_the_plain_sum_to_the_bit(strides, multiplier, k):
  # Only the kernel gradient is computed differently: the forward pass and the input gradient
  # add the same products in the same order (elementwise, no reduction to reorder), so
  # networks with constant depthwise filters (blur, APS) train exactly as before.
  rng = np.random.default_rng(5)
  x, w = normal((3, 9, 8, 4), rng), normal((k, k, 1, 4 * multiplier), rng)
  pads = ((k // 2, k // 2), (k // 2, k // 2))
  ours = lambda x, w: ops.conv(x, w, strides=strides, padding=pads, feature_group_count=4,  # noqa: E731
                               lowering="taps")
  plain = lambda x, w: _plain_tap_sum(x, w, strides, pads)  # noqa: E731
  for fn in (ours, plain):
    assert jax.eval_shape(fn, x, w).shape == jax.eval_shape(plain, x, w).shape
  g = normal(jax.eval_shape(plain, x, w).shape, rng)
  run = lambda fn: jax.jit(lambda x, w, g: (fn(x, w), jax.vjp(lambda x: fn(x, w), x)[1](g)[0]))(x, w, g)  # noqa: E731
  for a, b in zip(run(ours), run(plain)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name", ["depthwise s2 multiplier 2", "depthwise dilated CIRCULAR"])
def test_depthwise_second_order_equals_lax(name):
  # Gradients of gradients (and forward over reverse) go through the kernel gradient's own
  # derivatives; lax's depthwise convolution computes the same second derivatives.
  case = _case(name)
  x, w, rng = _operands(case)
  vw = normal(w.shape, rng)

  def second_order(lowering):
    conv = lambda x, w: ops.conv(x, w, lowering=lowering, **case[3])  # noqa: E731
    grad_w = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=1)
    outer = jax.grad(lambda x, w: jnp.sum(jnp.tanh(grad_w(x, w))), argnums=(0, 1))(x, w)
    hvp = jax.jvp(lambda w: grad_w(x, w), (w,), (vw,))[1]
    return (*outer, hvp)

  ours, theirs = jax.jit(lambda: second_order("taps"))(), jax.jit(lambda: second_order("lax"))()
  # Each second derivative sums products of two first-order sums.
  terms = _terms(case) ** 2
  for a, b in zip(ours, theirs):
    _assert_close(a, b, terms)


def test_depthwise_vmap_over_kernels_and_images():
  case = _case("depthwise s2 multiplier 2")
  x, w, _ = _operands(case)
  xs, ws = jnp.stack([x, -2 * x, x + 1]), jnp.stack([w, 0.5 * w, -w])
  conv = _taps(case)
  value_and_grads = jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1))
  for in_axes in ((0, None), (None, 0), (0, 0)):
    batched = jax.jit(jax.vmap(value_and_grads, in_axes=in_axes))(xs if in_axes[0] == 0 else x,
                                                                   ws if in_axes[1] == 0 else w)
    for b in range(3):
      one = value_and_grads(xs[b] if in_axes[0] == 0 else x, ws[b] if in_axes[1] == 0 else w)
      for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(one)):
        _assert_close(got[b], want, _terms(case))


def test_depthwise_under_shard_map():
  from jax.sharding import Mesh, PartitionSpec as P  # noqa: PLC0415
  case = _case("depthwise")
  x, w, _ = _operands(case)
  mesh = Mesh(np.array(jax.local_devices()[:2]), ("d",))
  conv = lambda lowering: lambda x, w: ops.conv(x, w, lowering=lowering, **case[3])  # noqa: E731

  # Examples split, kernel replicated: the replicated kernel's gradient is summed over devices.
  def grads(lowering):
    local = lambda w, x: jax.lax.psum(jax.grad(lambda w: jnp.sum(jnp.sin(conv(lowering)(x, w))))(w), "d")  # noqa: E731
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("d")), out_specs=P()))(w, x)

  _assert_close(grads("taps"), grads("lax"), _terms(case))
  # Kernels split, image replicated: the result varies along the axis like the kernel does.
  ws = jnp.concatenate([w, -3 * w])
  split = jax.jit(jax.shard_map(lambda w, x: conv("taps")(x, w), mesh=mesh, in_specs=(P("d"), P()),
                                out_specs=P("d")))
  want = jnp.concatenate([conv("lax")(x, w), conv("lax")(x, -3 * w)])
  _assert_close(split(ws, x), want, _terms(case))
  with pytest.raises(ValueError, match="replication"):
    jax.shard_map(lambda w, x: conv("taps")(x, w), mesh=mesh, in_specs=(P("d"), P()), out_specs=P())(ws, x)


def test_depthwise_kernel_gradient_sums_bfloat16_in_float32():
  # 64 * 16 * 16 = 16,384 products per kernel value. Summed in float32 and rounded once,
  # the bfloat16 gradient of bfloat16 operands is off the float32 gradient of the same
  # (rounded) operands by the rounding of each product and of the result: under 2 eps of
  # bfloat16 relative to the largest value. Summed in bfloat16 they drifted by 0.15.
  rng = np.random.default_rng(0)
  x, w, g = (normal(s, rng).astype(jnp.bfloat16) for s in ((64, 16, 16, 8), (3, 3, 1, 8), (64, 16, 16, 8)))
  conv = lambda x, w: ops.conv(x, w, padding=1, feature_group_count=8, lowering="taps")  # noqa: E731
  dw = jax.jit(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1])
  ours = dw(x, w, g)
  assert ours.dtype == jnp.bfloat16
  want = dw(*(a.astype(jnp.float32) for a in (x, w, g)))
  scale = float(jnp.max(jnp.abs(want)))
  error = float(jnp.max(jnp.abs(ours.astype(jnp.float32) - want)))
  assert error <= 2 * float(jnp.finfo(jnp.bfloat16).eps) * scale, (error, scale)


def test_subpixel_phases_are_chunked_convolutions_or_products():
  # 4x4 stride 2: four 2x2 phase kernels, each a convolution in chunks of phase_chunk(32) = 8;
  # 2x2 stride 2: four 1x1 phase kernels, each a matrix product.
  kwargs = dict(padding=((2, 3), (2, 3)), lhs_dilation=2, lowering="subpixel")
  x = jnp.ones((32, 4, 4, 3))
  chunk = ops.lowering.phase_chunk(32)
  assert chunk == 8
  prims = primitives(lambda x, w: ops.conv(x, w, **kwargs), x, jnp.ones((4, 4, 3, 2)))
  assert prims["conv_general_dilated"] == 4 * 32 // chunk
  kwargs["padding"] = ((1, 1), (1, 1))
  prims = primitives(lambda x, w: ops.conv(x, w, **kwargs), x, jnp.ones((2, 2, 3, 2)))
  assert "conv_general_dilated" not in prims and prims["dot_general"] == 4
  # 3x3 stride 2: 2x2, 2x1 and 1x2 phase kernels chunked, the 1x1 one a product.
  prims = primitives(lambda x, w: ops.conv(x, w, **kwargs), x, jnp.ones((3, 3, 3, 2)))
  assert prims["conv_general_dilated"] == 3 * 32 // chunk and prims["dot_general"] == 1


def test_phase_chunk_is_a_quarter_of_the_batch_within_bounds():
  assert [ops.lowering.phase_chunk(n) for n in (4, 32, 64, 128, 512)] == [8, 8, 16, 16, 16]
  assert ops.lowering.phase_chunk(64, chunk=32) == 16


def test_phase_chunk_override_sets_every_phase_chunk(monkeypatch):
  # PHASE_CHUNK (benchmarks/conv_ops.py --phase-chunk) replaces the rule, read at trace time.
  monkeypatch.setattr(ops.lowering, "PHASE_CHUNK", 4)
  assert [ops.lowering.phase_chunk(n) for n in (4, 32, 128)] == [4, 4, 4]
  kwargs = dict(padding=((2, 3), (2, 3)), lhs_dilation=2, lowering="subpixel")
  prims = primitives(lambda x, w: ops.conv(x, w, **kwargs), jnp.ones((32, 4, 4, 3)),
                     jnp.ones((4, 4, 3, 2)))
  assert prims["conv_general_dilated"] == 4 * 32 // 4


def test_subpixel_with_strides_is_an_error():
  x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
  with pytest.raises(ValueError, match="subpixel.*strides"):
    ops.conv(x, w, strides=2, lhs_dilation=2, padding=1, lowering="subpixel")


def test_subpixel_without_input_dilation_is_matmul():
  x, w = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
  prims = primitives(lambda x, w: ops.conv(x, w, strides=2, lowering="subpixel"), x, w)
  assert "conv_general_dilated" not in prims and "dot_general" in prims
