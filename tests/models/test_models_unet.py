"""U-Net: exact circular shift equivariance with APS down- and up-sampling; regression heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax import models
from cnnjax.testing import assert_shift_equivariant
from testlib import compile_fast

SHAPE = (1, 8, 8, 1)


def _compiled(**fields):
  model = models.create("unet", features=(4, 8), num_classes=3, **fields)
  x = jnp.zeros(SHAPE)
  variables = compile_fast(lambda x: model.init(jax.random.key(1), x, train=False), x)(x)
  compiled = compile_fast(lambda v, z: model.apply(v, z, train=False), variables, x)
  return lambda z: compiled(variables, z)


@pytest.fixture(scope="module")
def aps_unets():
  return {up: _compiled(downsample="aps", upsample=up) for up in ("transpose", "resize")}


def _tolerance(y):
  # Both sides run the same float32 arithmetic on permuted inputs; 1e-5 of the
  # output's magnitude covers any reassociation of the per-pixel sums.
  return 1e-5 * float(jnp.max(jnp.abs(y))) + 1e-30


# Ten examples: every one reuses the two compiled networks; odd shifts are half of all draws.
@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), t0=st.integers(-7, 7), t1=st.integers(-7, 7),
       up=st.sampled_from(["transpose", "resize"]))
def test_aps_unet_is_exactly_equivariant_to_circular_shifts(aps_unets, seed, t0, t1, up):
  fn = aps_unets[up]
  x = jax.random.normal(jax.random.key(seed), SHAPE)
  assert_shift_equivariant(fn, x, (t0, t1), atol=_tolerance(fn(x)))


def test_odd_shifts_are_covered_and_the_strided_unet_fails_them():
  fn = _compiled(downsample="stride", upsample="transpose")
  x = jax.random.normal(jax.random.key(0), SHAPE)
  # Shifts by the total stride (4) commute with a strided U-Net; an odd one does not.
  assert_shift_equivariant(fn, x, (4, -4), atol=_tolerance(fn(x)))
  with pytest.raises(AssertionError, match="not shift-equivariant"):
    assert_shift_equivariant(fn, x, (1, 0), atol=_tolerance(fn(x)))


def test_unet_checks_its_input_size():
  model = models.create("unet", features=(4, 8, 8))
  with pytest.raises(ValueError, match="divisible by 8, got spatial size \\(12, 12\\)"):
    model.init(jax.random.key(0), jnp.zeros((1, 12, 12, 1)), train=False)
  with pytest.raises(ValueError, match="upsample must be one of"):
    models.create("unet", upsample="bicubic").init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))


def test_every_classifier_takes_num_outputs_as_a_regression_head():
  for name in models.names():
    if name.startswith("test_"):
      continue
    assert "num_classes" in models.spec(name).fields(), name
  model = models.create("digits_cnn", num_outputs=2)
  y = jax.jit(lambda x: model.apply(model.init(jax.random.key(0), x, train=False), x, train=False))(
      jnp.ones((3, 8, 8, 1)))
  assert y.shape == (3, 2) and y.dtype == jnp.float32
  with pytest.raises(TypeError, match="not both"):
    models.create("digits_cnn", num_outputs=1, num_classes=10)
