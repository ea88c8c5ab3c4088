"""``ops.conv``'s lowering choice: 'matmul' and 'chunked' equal 'lax'; the 'auto' rule; overrides.

The formulations of ``ops.conv_fast`` ('subpixel', 'taps', 'per_group') are
held to ``conv_reference`` in ``test_ops_conv_fast.py``.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import layers, ops
from testlib import assert_close, equations, normal, primitives

CASES = [
    dict(x=(2, 9, 9, 3), w=(3, 3, 3, 4), kwargs=dict(padding="SAME")),
    dict(x=(2, 10, 9, 3), w=(5, 5, 3, 6), kwargs=dict(padding="VALID", strides=2)),
    dict(x=(2, 8, 8, 4), w=(3, 3, 1, 8), kwargs=dict(padding=1, feature_group_count=4)),
    dict(x=(2, 8, 8, 2), w=(3, 3, 2, 3), kwargs=dict(padding="CIRCULAR", rhs_dilation=2)),
    dict(x=(2, 5, 5, 3), w=(3, 3, 3, 2), kwargs=dict(padding=((1, 2), (1, 2)), lhs_dilation=2)),
    dict(x=(2, 12, 3), w=(3, 3, 5), kwargs=dict(padding="CAUSAL")),
    dict(x=(1, 4, 5, 6, 2), w=(2, 2, 2, 2, 3), kwargs=dict(padding="REFLECT", strides=(1, 2, 1))),
    # Pads wider than the kernel reaches: 'chunked' pads the input beforehand.
    dict(x=(3, 5, 4, 2), w=(3, 2, 2, 3), kwargs=dict(padding=((2, 3), (1, 2)))),
    dict(x=(2, 6, 2), w=(2, 2, 3), kwargs=dict(padding=((3, 1),), rhs_dilation=2)),
]


def _operands(case, seed=0):
  rng = np.random.default_rng(seed)
  return tuple(normal(shape, rng) for shape in (case["x"], case["w"], case["w"][-1:]))


@pytest.mark.parametrize("lowering", ["matmul", "chunked"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['x']}-{c['kwargs']}")
def test_lowering_equals_lax(case, lowering, monkeypatch):
  # Chunks of one example, so every case has several chunks (and a last one).
  monkeypatch.setattr(ops.lowering, "CHUNK_BATCH", 1)
  x, w, b = _operands(case)

  def loss(lowering, x, w, b):
    y = ops.conv(x, w, b, lowering=lowering, **case["kwargs"])
    return jnp.sum(jnp.sin(y)), y

  # Compiled whole (CHUNK_BATCH is read while tracing): one program per lowering
  # instead of eagerly dispatched ops.
  step = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True), static_argnums=0)
  (_, y_lax), g_lax = step("lax", x, w, b)
  (_, y_mm), g_mm = step(lowering, x, w, b)
  # Two summation orders of the same products: rounding relative to the largest output (the
  # im2col and lax sums have up to K*C_in terms); a wrong index moves outputs by O(max|y|).
  assert_close(y_mm, y_lax, rtol=1e-5)
  for a, e in zip(g_mm, g_lax):
    # Gradients sum over batch and positions too (hundreds of terms): 10x the forward rtol.
    assert_close(a, e, rtol=1e-4)


def test_exceeds_kernel_reach():
  reach = ops.lowering.exceeds_kernel_reach
  assert not reach((3, 3, 2, 4), ((1, 1), (1, 1)), (1, 1))  # 'SAME'
  assert reach((3, 3, 2, 4), ((1, 2), (1, 1)), (1, 1))
  assert not reach((3, 3, 2, 4), ((2, 2), (0, 0)), (2, 1))  # dilated kernel reaches 4
  assert reach((2, 2, 2, 4), ((1, 1), (0, 0)), (1, 1))


def test_chunked_pads_beforehand_only_beyond_the_kernel_reach():
  x, w = jnp.ones((4, 6, 6, 2)), jnp.ones((3, 3, 2, 3))

  def convs(padding):
    jaxpr = jax.make_jaxpr(lambda x, w: ops.conv(x, w, padding=padding, lowering="chunked"))(x, w)
    return [e.params["padding"] for e in equations(jaxpr.jaxpr)
            if e.primitive.name == "conv_general_dilated"]

  assert convs(((1, 1), (1, 1))) == [((1, 1), (1, 1))]
  assert convs(((2, 1), (1, 1))) == [((0, 0), (0, 0))]


def _primitives(fn, *args):
  return set(primitives(fn, *args))


def _conv_count(fn, *args):
  return primitives(fn, *args)["conv_general_dilated"]


def test_lowering_selects_the_formulation():
  x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
  assert "conv_general_dilated" in _primitives(lambda x, w: ops.conv(x, w, lowering="lax"), x, w)
  chunk = ops.lowering.CHUNK_BATCH
  big = jnp.ones((2 * chunk + 1, 8, 8, 3))
  assert _conv_count(lambda x, w: ops.conv(x, w, lowering="chunked"), big, w) == 3
  assert _conv_count(lambda x, w: ops.conv(x, w, lowering="lax"), big, w) == 1
  matmul = _primitives(lambda x, w: ops.conv(x, w, lowering="matmul"), x, w)
  assert "conv_general_dilated" not in matmul and "dot_general" in matmul


def test_auto_rule():
  cpu = dict(backend="cpu")
  conv_lib = ops.lowering
  # Off CPU, always lax, whatever the shape.
  for backend in ("gpu", "tpu"):
    assert ops.choose_lowering((512, 32, 32, 3), (5, 5, 3, 6), backend=backend) == "lax"
    assert ops.choose_lowering((8, 8, 8, 256), (3, 3, 1, 256), feature_group_count=256,
                               backend=backend) == "lax"
  # 3x3 convolutions with many channels, on small batches: lax.
  assert ops.choose_lowering((16, 32, 32, 64), (3, 3, 64, 64), padding=1, **cpu) == "lax"
  # 1x1 convolutions are matrix products.
  assert ops.choose_lowering((16, 56, 56, 256), (1, 1, 256, 64), **cpu) == "matmul"
  assert ops.choose_lowering((128, 32, 32, 64), (1, 1, 64, 128), strides=2, **cpu) == "matmul"
  # Input-dilated (transposed) convolutions: by output phase; with window strides, im2col.
  assert ops.choose_lowering((8, 16, 16, 64), (3, 3, 64, 32), lhs_dilation=2, **cpu) == "subpixel"
  assert ops.choose_lowering((8, 16, 16, 64), (3, 3, 64, 32), lhs_dilation=2, strides=2,
                             **cpu) == "matmul"
  # Depthwise (one input channel per group, any multiplier) by taps, other grouped per group.
  for c in (8, 512):
    assert ops.choose_lowering((8, 14, 14, c), (3, 3, 1, c), feature_group_count=c, **cpu) == "taps"
    assert ops.choose_lowering((8, 14, 14, c), (3, 3, 1, 2 * c), feature_group_count=c,
                               **cpu) == "taps"
  assert ops.choose_lowering((64, 28, 28, 128), (3, 3, 16, 128), feature_group_count=8,
                             **cpu) == "per_group"
  # Past PER_GROUP_MAX_GROUPS groups (ResNeXt's 32), one grouped product over im2col.
  assert ops.choose_lowering((64, 28, 28, 128), (3, 3, 4, 128), feature_group_count=32,
                             **cpu) == "matmul"
  # Batches larger than a chunk, on maps of at least CHUNK_MIN_POSITIONS positions: chunked.
  chunk, positions = conv_lib.CHUNK_BATCH, conv_lib.CHUNK_MIN_POSITIONS
  assert ops.choose_lowering((chunk + 1, 32, 32, 3), (5, 5, 3, 6), **cpu) == "chunked"
  assert ops.choose_lowering((chunk, 32, 32, 3), (5, 5, 3, 6), **cpu) == "lax"
  assert ops.choose_lowering((128, 32, 32, 64), (3, 3, 64, 128), strides=2, padding=1,
                             **cpu) == "chunked"
  assert ops.choose_lowering((64, 224, 224, 3), (7, 7, 3, 64), strides=2, padding=3,
                             **cpu) == "chunked"
  side = int(positions ** 0.5)  # 'SAME' keeps the side: side**2 == positions.
  assert ops.choose_lowering((128, side, side, 256), (3, 3, 256, 256), padding="SAME",
                             **cpu) == "chunked"
  assert ops.choose_lowering((128, side // 2, side // 2, 512), (3, 3, 512, 512),
                             padding="SAME", **cpu) == "lax"


def test_auto_follows_the_rule_and_the_override():
  big, w = jnp.ones((512, 32, 32, 3)), jnp.ones((5, 5, 3, 6))
  expected = ops.choose_lowering(big.shape, w.shape)
  chunks = 512 // ops.lowering.CHUNK_BATCH
  count = {"lax": 1, "chunked": chunks, "matmul": 0, "taps": 0}[expected]
  assert _conv_count(lambda x, w: ops.conv(x, w), big, w) == count
  with ops.default_lowering("matmul"):
    assert "conv_general_dilated" not in _primitives(lambda x, w: ops.conv(x, w), big, w)
    # An explicit argument wins over the context.
    assert "conv_general_dilated" in _primitives(
        lambda x, w: ops.conv(x, w, lowering="lax"), big, w)
  with ops.default_lowering("lax"):
    assert _conv_count(lambda x, w: ops.conv(x, w), big, w) == 1


def test_policy_lives_in_its_own_module():
  # Re-exported for callers of ops and of ops.conv; defined once, in ops.lowering.
  conv_module = importlib.import_module("cnnjax.ops.conv")
  assert ops.choose_lowering is ops.lowering.choose_lowering is conv_module.choose_lowering
  assert ops.default_lowering is ops.lowering.default_lowering
  assert ops.LOWERINGS == ops.lowering.LOWERINGS
  with ops.default_lowering("lax"):
    assert ops.lowering.current_default() == "lax"
  assert ops.lowering.current_default() == "auto"


def test_unknown_lowering_is_an_error():
  x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
  with pytest.raises(ValueError, match="lowering must be one of"):
    ops.conv(x, w, lowering="im2col")
  with pytest.raises(ValueError, match="lowering must be one of"):
    with ops.default_lowering("fast"):
      pass


def test_conv_layer_lowering_field():
  x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
  lax_layer = layers.Conv(5, (3, 3), strides=2, lowering="lax")
  variables = lax_layer.init(jax.random.key(0), x)
  mm_layer = layers.Conv(5, (3, 3), strides=2, lowering="matmul")
  # 27-term sums in two orders, relative to the largest output.
  assert_close(mm_layer.apply(variables, x), lax_layer.apply(variables, x), rtol=1e-5)
  prims = _primitives(lambda v, x: mm_layer.apply(v, x), variables, x)
  assert "conv_general_dilated" not in prims
