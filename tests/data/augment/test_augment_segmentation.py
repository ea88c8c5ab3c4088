"""Augmentations on an image and its class map: same geometry, nearest neighbour, refusals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.data import augment

GEOMETRY = ('random_crop(padding=3, fill=255), horizontal_flip, vflip, '
            'rotate(degrees=40, order=0, fill=255), '
            'random_resized_crop(scale=(0.3, 1.0), method="nearest")')


@pytest.fixture(scope="module")
def class_map():
  return jnp.asarray(np.random.default_rng(0).integers(0, 11, size=(12, 10)), jnp.int32)


def test_the_map_follows_the_image_geometry_exactly(class_map):
  # An image that is the map itself, transformed with nearest-neighbour settings:
  # the augmented image must equal the augmented map wherever they came from.
  fn = augment.build(GEOMETRY)
  paired = jax.jit(jax.vmap(augment.with_segmentation(fn)))
  plain = jax.jit(jax.vmap(fn))
  keys = jax.random.split(jax.random.key(3), 16)
  images = jnp.broadcast_to(class_map[..., None].astype(jnp.float32), (16, 12, 10, 1))
  maps = jnp.broadcast_to(class_map, (16, 12, 10))
  out_images, out_maps = paired(keys, images, maps)
  np.testing.assert_array_equal(out_images[..., 0], out_maps.astype(jnp.float32))
  # The image gets exactly what the plain augmentation gives with the same key.
  np.testing.assert_array_equal(out_images, plain(keys, images))
  # The draws moved pixels in most examples, and nearest neighbour kept the classes.
  assert int(jnp.sum(jnp.any(out_maps != maps, axis=(1, 2)))) >= 12
  assert set(np.unique(out_maps)) <= set(range(11)) | {255}


def test_photometric_augmentations_leave_the_map(class_map):
  fn = augment.build("gaussian_blur(kernel_size=3, sigma=(1.0, 1.0))")
  image = jnp.asarray(np.random.default_rng(1).normal(size=(12, 10, 3)), jnp.float32)
  out, seg = jax.jit(augment.with_segmentation(fn))(jax.random.key(0), image, class_map)
  assert not np.array_equal(out, image)
  np.testing.assert_array_equal(seg, class_map)


def test_cutmix_segmentation_pastes_the_same_box_as_cutmix(class_map):
  images = jnp.asarray(np.random.default_rng(2).normal(size=(4, 12, 10, 1)), jnp.float32)
  maps = jnp.stack([class_map + i for i in range(4)])
  key = jax.random.key(7)
  mixed, mixed_maps = augment.cutmix_segmentation(key, images, maps, alpha=1.0)
  plain, _ = augment.cutmix(key, images, jax.nn.one_hot(jnp.arange(4), 4), alpha=1.0)
  np.testing.assert_array_equal(mixed, plain)
  # Every pixel's class comes from the example its image pixel came from (offset i).
  source = (mixed_maps - class_map[None]).astype(jnp.float32)
  for i in range(4):
    for s in np.unique(np.asarray(source[i])):
      where = np.asarray(source[i]) == s
      np.testing.assert_array_equal(np.asarray(mixed[i, ..., 0])[where],
                                    np.asarray(images[int(s), ..., 0])[where])


def test_mixup_and_unknown_functions_are_refused_for_class_maps(class_map):
  images = jnp.zeros((2, 12, 10, 1))
  with pytest.raises(ValueError, match="refused for segmentation"):
    augment.mixup(jax.random.key(0), images, jnp.stack([class_map, class_map]), 0.2)
  with pytest.raises(ValueError, match="cannot tell whether augmentation"):
    augment.with_segmentation(lambda k, x: x)(jax.random.key(0), images[0], class_map)
  with pytest.raises(ValueError, match=r"\(H, W\) = \(12, 10\)"):
    augment.with_segmentation(augment.build("flip"))(jax.random.key(0), images[0], class_map[:5])
