"""Per-example augmentations (``augment.ops_image``): shapes, dtypes, determinism, exact identities, errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnjax.data import augment
from testlib import assert_close

KEY = jax.random.key(0)


def _image(seed=0, shape=(9, 11, 3)):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


PER_EXAMPLE = {
    "random_crop": functools.partial(augment.random_crop, padding=2),
    "random_crop_reflect": functools.partial(augment.random_crop, size=(6, 7), padding=1, pad_mode="reflect"),
    "horizontal_flip": augment.horizontal_flip,
    "vertical_flip": augment.vertical_flip,
    "rotate": functools.partial(augment.rotate, degrees=30),
    "random_resized_crop": functools.partial(augment.random_resized_crop, size=8),
    "gaussian_blur": functools.partial(augment.gaussian_blur, kernel_size=5),
    "random_erasing": functools.partial(augment.random_erasing, p=1.0),
    "color_jitter": functools.partial(augment.color_jitter, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
    "salt_and_pepper": functools.partial(augment.salt_and_pepper, p=0.2),
    "compose": augment.build("crop(padding=1), flip, rotate(degrees=5)"),
    "random_apply": augment.RandomApply(augment.gaussian_blur, 0.5),
    "random_choice": augment.RandomChoice([augment.horizontal_flip, augment.vertical_flip,
                                           augment.salt_and_pepper], weights=[1, 2, 1]),
}
OUT_SHAPE = {"random_crop_reflect": (6, 7, 3), "random_resized_crop": (8, 8, 3)}


@pytest.mark.parametrize("name", sorted(PER_EXAMPLE))
def test_jit_vmap_shape_dtype_determinism(name):
  fn = jax.jit(PER_EXAMPLE[name])  # one compilation for every call below
  image = _image()
  out = fn(KEY, image)
  assert out.shape == OUT_SHAPE.get(name, image.shape) and out.dtype == image.dtype
  np.testing.assert_array_equal(out, fn(KEY, image))
  outs = [fn(jax.random.key(s), image) for s in range(8)]
  assert any(not np.array_equal(outs[0], o) for o in outs[1:]), "different keys should differ"
  # vmapped == looped, with per-example keys.
  images = jnp.stack([_image(s) for s in range(4)])
  keys = jax.random.split(KEY, 4)
  batched = jax.jit(augment.batch_augment(PER_EXAMPLE[name]))(KEY, images)
  looped = jnp.stack([fn(k, x) for k, x in zip(keys, images)])
  # The same per-example ops, vmapped vs looped: XLA may fuse differently, a few eps32 of the
  # unit-normal pixels; relative to the largest so that rescaling ops are covered too.
  assert_close(batched, looped, rtol=1e-5)


_H_FLIP = jax.jit(functools.partial(augment.horizontal_flip, p=1.0))
_V_FLIP = jax.jit(functools.partial(augment.vertical_flip, p=1.0))


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=5)
def test_two_flips_are_the_identity(seed):
  image, key = _image(seed % 7), jax.random.key(seed)
  for flip in (_H_FLIP, _V_FLIP):
    once = flip(key, image)
    assert not np.array_equal(once, image)
    np.testing.assert_array_equal(flip(key, once), image)
  np.testing.assert_array_equal(augment.horizontal_flip(key, image, p=0.0), image)


def test_zero_rotation_and_zero_blur_are_the_identity():
  image = _image()
  rotate = jax.jit(functools.partial(augment.rotate, degrees=(0.0, 0.0)))
  blur = jax.jit(functools.partial(augment.gaussian_blur, kernel_size=5, sigma=0.0))
  np.testing.assert_array_equal(rotate(KEY, image), image)
  # sigma=0 is a delta kernel: one weight of 1, the rest 0; allclose's default 1e-7 relative.
  np.testing.assert_allclose(blur(KEY, image), image)
  np.testing.assert_array_equal(augment.gaussian_kernel1d(jnp.float32(0.0), 5), [0, 0, 1, 0, 0])


def test_rotation_by_90_degrees_of_a_square():
  image = _image(shape=(7, 7, 2))
  out = augment.rotate(KEY, image, degrees=(90.0, 90.0))
  # Bilinear sampling at coordinates computed with cos/sin(90 deg) ~ 1e-7 off the grid:
  # interpolation weights off by ~1e-6, relative to the largest pixel.
  assert_close(out, jnp.rot90(image, k=1, axes=(0, 1)), rtol=1e-5)


_BLUR = jax.jit(functools.partial(augment.gaussian_blur, kernel_size=5, sigma=(0.1, 3.0)))


@given(st.floats(-3, 3), st.integers(0, 1000))
@settings(max_examples=10)
def test_blur_keeps_a_constant_image_constant(value, seed):
  image = jnp.full((6, 5, 2), value, jnp.float32)
  out = _BLUR(jax.random.key(seed), image)
  # Normalised weights summing to 1 (to a few eps32) times a constant: relative to it.
  assert_close(out, image, rtol=1e-5)


_SCALE = (0.05, 0.2)
_ERASE = jax.jit(functools.partial(augment.random_erasing, p=1.0, scale=_SCALE, value=-1.0))


@given(st.integers(0, 10_000))
@settings(max_examples=15)
def test_erased_area_is_a_box_in_range(seed):
  image = jnp.ones((64, 64, 3))
  scale = _SCALE
  out = np.asarray(_ERASE(jax.random.key(seed), image))
  erased = (out == -1.0).all(axis=-1)
  assert ((out == -1.0) | (out == 1.0)).all()
  rows, cols = np.nonzero(erased)
  assert erased.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one box
  fraction = erased.mean()
  assert scale[0] * 0.85 <= fraction <= scale[1] * 1.15, fraction  # the box size is rounded to pixels


def test_random_crop_is_a_window_of_the_padded_image():
  image = _image(shape=(5, 5, 1))
  out = augment.random_crop(KEY, image, padding=2, pad_mode="constant", fill=9.0)
  padded = np.pad(np.asarray(image), ((2, 2), (2, 2), (0, 0)), constant_values=9.0)
  windows = [padded[i:i + 5, j:j + 5] for i in range(5) for j in range(5)]
  assert any(np.array_equal(out, w) for w in windows)
  with pytest.raises(ValueError, match="larger than the padded image"):
    augment.random_crop(KEY, image, size=10)


def test_random_resized_crop_full_scale_is_a_resize():
  image = _image(shape=(8, 8, 1))
  crop = jax.jit(functools.partial(augment.random_resized_crop, size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0)))
  out = crop(KEY, image)
  # An identity resize: bilinear weights of 1 and 0 up to a few eps32, relative to max|pixel|.
  assert_close(out, image, rtol=1e-5)


def test_salt_and_pepper_uses_the_extremes():
  image = _image()
  out = augment.salt_and_pepper(KEY, image, p=0.5)
  changed = np.asarray(out != image)
  assert changed.any()
  assert np.isin(np.asarray(out)[changed], [float(image.min()), float(image.max())]).all()


def test_color_jitter_identity_and_grey_hue_invariance():
  image = _image()
  np.testing.assert_array_equal(augment.color_jitter(KEY, image), image)
  grey = jnp.repeat(_image(shape=(4, 4, 1)), 3, axis=-1)
  # A hue rotation of grey pixels is a round trip through another colour space: a few
  # eps32 relative to the largest pixel. Doubling the brightness is one product: 1e-6.
  assert_close(augment.color_jitter(KEY, grey, hue=0.5), grey, rtol=1e-5)
  np.testing.assert_allclose(augment.color_jitter(KEY, image, brightness=(2.0, 2.0)), 2 * image, rtol=1e-6)


def test_input_errors():
  with pytest.raises(ValueError, match="batch_augment"):
    augment.horizontal_flip(KEY, jnp.zeros((2, 4, 4, 3)))
  with pytest.raises(TypeError, match="floating"):
    augment.rotate(KEY, jnp.zeros((4, 4, 3), jnp.uint8))
  with pytest.raises(ValueError, match="odd"):
    augment.gaussian_blur(KEY, _image(), kernel_size=4)
