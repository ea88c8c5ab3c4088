"""The spec and the combinators (``augment.builder``): one spec form, its errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.data import augment

KEY = jax.random.key(0)


def _image(seed=0, shape=(9, 11, 3)):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def test_the_spec_string_with_aliases_builds_the_same_functions():
  image = _image()
  a = augment.build("random_crop(padding=2), horizontal_flip")
  b = augment.build("crop(padding=2), flip")
  c = augment.Compose([functools.partial(augment.random_crop, padding=2), augment.horizontal_flip])
  for fn in (b, c):
    np.testing.assert_array_equal(a(KEY, image), fn(KEY, image))
  np.testing.assert_array_equal(augment.build("")(KEY, image), image)
  np.testing.assert_array_equal(augment.build(None)(KEY, image), image)


@pytest.mark.parametrize("spec, match", [
    ("spin", "unknown augmentation 'spin'"),
    ("rotate(angle=3)", "unknown arguments"),
    ("rotate(degrees=x)", "literals"),
    ("rotate(", "cannot parse"),
    (["crop(padding=2)", "flip"], "one string of comma-separated calls"),
    ([("random_crop", {"padding": 2})], "one string"),
])
def test_build_errors(spec, match):
  with pytest.raises(ValueError, match=match):
    augment.build(spec)
