"""The hypothesis strategies of cnnjax.testing draw what they promise."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax import ops
from cnnjax import testing
from cnnjax.testing import strategies as cst


@settings(max_examples=20)
@given(x=cst.images(rank=2, batch=(1, 3), spatial=(4, 12), channels=(1, 4)))
def test_images_shape_dtype_and_values(x):
  assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 4
  assert x.shape[0] in (1, 2, 3) and all(4 <= n <= 12 for n in x.shape[1:3]) and 1 <= x.shape[3] <= 4
  assert np.isfinite(x).all() and x.std() > 0 or x.size == 1


@settings(max_examples=15)
@given(x=cst.images(rank=3, batch=2, spatial=(3, 7), channels=5, dtype=np.float64, multiple_of=(2, 3, 1)))
def test_images_fixed_sizes_and_multiples(x):
  assert x.dtype == np.float64 and x.shape[0] == 2 and x.shape[-1] == 5
  assert x.shape[1] % 2 == 0 and x.shape[2] % 3 == 0


@settings(max_examples=3)
@given(x=cst.images(rank=1, dtype=jnp.bfloat16))
def test_images_bfloat16(x):
  assert x.dtype == jnp.bfloat16 and x.ndim == 3


def test_images_argument_errors_at_construction():
  with pytest.raises(ValueError, match="rank must be 1, 2 or 3"):
    cst.images(rank=4)
  with pytest.raises(ValueError, match=r"spatial must be an int or an inclusive \(lo, hi\)"):
    cst.images(spatial=(8, 4))


@settings(max_examples=30)
@given(data=st.data(), shape=st.tuples(st.integers(1, 9), st.integers(1, 9)), stride=st.integers(1, 3))
def test_shifts_are_multiples_of_the_stride_within_the_axis(data, shape, stride):
  shift = data.draw(cst.shifts(shape, stride))
  assert len(shift) == 2
  for t, n in zip(shift, shape):
    assert t % stride == 0 and abs(t) <= n - 1


@settings(max_examples=20)
@given(data=st.data())
def test_shifts_respect_max_shift(data):
  shift = data.draw(cst.shifts((10, 10, 10), stride=(1, 2, 3), max_shift=4))
  assert all(abs(t) <= 4 for t in shift) and shift[1] % 2 == 0 and shift[2] % 3 == 0


def test_shifts_reach_both_directions():
  seen = set()
  @settings(max_examples=40, derandomize=True)
  @given(cst.shifts((5,)))
  def collect(shift):
    seen.add(shift[0])
  collect()
  assert min(seen) < 0 < max(seen)


@pytest.mark.parametrize("rank", [1, 2, 3])
@settings(max_examples=10)
@given(data=st.data())
def test_conv_configs_build_valid_convolutions(rank, data):
  config = data.draw(cst.conv_configs(rank, strides=(1, 2), paddings=("VALID", "SAME", "CIRCULAR")))
  assert config.rank == rank
  assert config.in_features % config.feature_group_count == 0
  assert config.features % config.feature_group_count == 0
  kernel, bias = config.init(seed=1)
  assert kernel.shape == config.kernel_shape and bias.shape == (config.features,)
  spatial = tuple(max(k, 3) for k in config.effective_kernel)
  x = np.ones((1, *spatial, config.in_features), np.float32)
  y = ops.conv(x, kernel, bias, **config.op_kwargs())
  expected = ops.conv_output_shape(spatial, config.kernel_size, config.strides, config.padding,
                                   config.kernel_dilation)
  assert y.shape == (1, *expected, config.features)
  assert set(config.layer_kwargs()) == {"features", "kernel_size", "strides", "padding",
                                        "kernel_dilation", "feature_group_count"}


def test_conv_configs_paddings_are_checked():
  with pytest.raises(ValueError, match="paddings must be drawn from"):
    cst.conv_configs(paddings=("MIRROR",))
  with pytest.raises(ValueError, match="'CAUSAL' is 1-D only"):
    cst.conv_configs(2, paddings=("CAUSAL",))


@settings(max_examples=3)
@given(config=cst.conv_configs(1, paddings=("CAUSAL",)))
def test_conv_configs_causal_in_1d(config):
  assert config.padding == "CAUSAL" and config.rank == 1


def test_strategies_are_reexported_by_cnnjax_testing():
  assert testing.images is cst.images and testing.shifts is cst.shifts
  assert testing.conv_configs is cst.conv_configs and testing.ConvConfig is cst.ConvConfig
  assert testing.strategies is cst
  with pytest.raises(AttributeError, match="no attribute 'nothing'"):
    testing.nothing  # noqa: B018


def test_sizes_come_from_a_few_buckets_by_default():
  """A property test compiles once per shape: shapes from 3 buckets per axis, not 9 values."""
  seen, every = set(), set()

  @settings(max_examples=60, derandomize=True)
  @given(x=cst.images(rank=2, batch=(1, 3), spatial=(4, 12), channels=(1, 4)),
         y=cst.images(rank=2, batch=1, spatial=(4, 12), channels=1, buckets=None))
  def collect(x, y):
    seen.update(x.shape[1:3])
    every.update(y.shape[1:3])

  collect()
  assert seen <= {4, 8, 12}
  assert len(every) > 3  # The opt-out draws sizes between the buckets too.


def test_strategies_without_hypothesis_name_the_extra(monkeypatch):
  import importlib
  import sys
  monkeypatch.setitem(sys.modules, "hypothesis", None)  # What a missing package looks like.
  monkeypatch.delitem(sys.modules, "cnnjax.testing.strategies")
  with pytest.raises(ImportError, match=r"pip install 'cnnjax\[testing\]'"):
    importlib.import_module("cnnjax.testing.strategies")
