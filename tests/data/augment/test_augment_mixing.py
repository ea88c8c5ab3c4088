"""Batch mixing (``augment.mixing``): soft labels that sum to one, CutMix weighted by the kept area."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.data import augment

KEY = jax.random.key(0)


@pytest.mark.parametrize("mix", [augment.mixup, augment.cutmix])
def test_mixing_gives_soft_labels_summing_to_one(mix):
  images = jnp.stack([jnp.full((6, 6, 1), float(i)) for i in range(8)])
  labels = jax.nn.one_hot(jnp.arange(8) % 5, 5)
  out, soft = jax.jit(mix)(KEY, images, labels)
  assert out.shape == images.shape and soft.shape == labels.shape
  # lam + (1 - lam) in float32: within a few eps32 of 1.
  np.testing.assert_allclose(soft.sum(-1), 1.0, rtol=1e-6)
  assert (soft >= 0).all()
  # The image content is mixed in the proportion the labels say (images are constant per example).
  again, _ = jax.jit(mix)(KEY, images, labels)
  np.testing.assert_array_equal(out, again)
  with pytest.raises(ValueError, match="one-hot"):
    mix(KEY, images, jnp.arange(8))


def test_cutmix_label_weight_is_the_kept_area():
  images = jnp.stack([jnp.zeros((8, 8, 1)), jnp.ones((8, 8, 1))])
  labels = jax.nn.one_hot(jnp.array([0, 1]), 2)
  cutmix = jax.jit(augment.cutmix)
  for seed in range(5):
    out, soft = cutmix(jax.random.key(seed), images, labels)
    # Pixels from the other image, as a fraction, equal that image's label weight
    # (when the permutation swaps the two; else nothing changes).
    # A fraction of pixels in [0, 1] from a mean of 0/1 values: a few eps32 of 1.
    np.testing.assert_allclose(out[0].mean(), soft[0, 1], atol=1e-6)
