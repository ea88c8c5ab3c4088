"""Bad input to the convolution ops raises a ValueError/TypeError naming what was expected."""

import jax.numpy as jnp
import pytest

from cnnjax import ops

IMPLS = (ops.conv, ops.conv_reference, ops.conv_matmul)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_wrong_rank(impl):
  with pytest.raises(ValueError, match=r"rank 4, \(N, H, W, C\).*got shape \(28, 28, 3\)"):
    impl(jnp.ones((28, 28, 3)), jnp.ones((3, 3, 3, 8)))


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_channels_first_is_named(impl):
  with pytest.raises(ValueError, match=r"expected NHWC.*3 channels.*\(2, 3, 32, 32\).*channels-first"):
    impl(jnp.ones((2, 3, 32, 32)), jnp.ones((3, 3, 3, 8)))


def test_channel_mismatch():
  with pytest.raises(ValueError, match=r"expected NHWC input \(channels last\) with 4 channels.*got.*5 channels"):
    ops.conv(jnp.ones((1, 8, 8, 5)), jnp.ones((3, 3, 4, 8)))


def test_channels_not_divisible_by_groups():
  with pytest.raises(ValueError, match=r"input channels \(5.*divisible by feature_group_count=2"):
    ops.conv(jnp.ones((1, 8, 8, 5)), jnp.ones((3, 3, 2, 4)), feature_group_count=2)
  with pytest.raises(ValueError, match=r"output channels \(5.*divisible"):
    ops.conv(jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 2, 5)), feature_group_count=2)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_kernel_larger_than_padded_input(impl):
  with pytest.raises(ValueError, match=r"kernel larger than the padded input.*\(5, 5\).*\(3, 3\)"):
    impl(jnp.ones((1, 3, 3, 1)), jnp.ones((5, 5, 1, 1)))
  with pytest.raises(ValueError, match=r"effective kernel \(5, 5\).*dilation \(2, 2\)"):
    impl(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), rhs_dilation=2)


@pytest.mark.parametrize("impl", IMPLS, ids=lambda f: f.__name__)
def test_integer_inputs(impl):
  with pytest.raises(TypeError, match=r"x must have a floating-point dtype.*got int32"):
    impl(jnp.ones((1, 5, 5, 1), jnp.int32), jnp.ones((3, 3, 1, 1)))
  with pytest.raises(TypeError, match=r"w must have a floating-point dtype.*got int32"):
    impl(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 1), jnp.int32))


def test_bad_kernel_rank_and_bias():
  with pytest.raises(ValueError, match=r"kernel w must be .*got shape \(3, 3\)"):
    ops.conv(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3)))
  with pytest.raises(ValueError, match=r"bias must have shape \(8,\).*\(4,\)"):
    ops.conv(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 8)), jnp.ones((4,)))
  with pytest.raises(ValueError, match="feature_group_count must be a positive int"):
    ops.conv(jnp.ones((1, 5, 5, 1)), jnp.ones((3, 3, 1, 8)), feature_group_count=0)


def test_not_an_array():
  with pytest.raises(TypeError, match="x must be an array, got list"):
    ops.conv([[1.0]], jnp.ones((3, 3, 1, 1)))
