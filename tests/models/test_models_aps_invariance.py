"""Residual models with APS downsampling and circular padding are exactly shift-invariant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import models
from cnnjax.testing import assert_shift_invariant
from testlib import init_variables


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet50_cifar"])
def test_aps_resnet_is_invariant_to_circular_shifts(name):
  # Blocks share the main path's polyphase index with the shortcut; with two
  # independent choices a shift of 1 changes the logits by O(1).
  model = models.create(name, num_classes=10, num_filters=4, downsample="aps", padding="CIRCULAR")
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = init_variables(model, x, train=False)  # NumPy draws: nothing compiled
  fn = jax.jit(lambda z: model.apply(variables, z, train=False))
  for shift in [(1, 0), (0, 3), (5, 7), (-2, 9)]:
    # A shift reorders the sums of ~50 convolutions of up to 4,608 float32
    # terms: 5e-6 x max|logit| was seen (logits of 25-270). 1e-4 x max|logit|
    # leaves 20x room; a wrong polyphase choice moves the logits by O(1).
    assert_shift_invariant(fn, x, shift, rtol=1e-4)


def test_strided_resnet_is_not_invariant():
  model = models.create("resnet18_cifar", num_classes=10, num_filters=4, padding="CIRCULAR")
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = init_variables(model, x, train=False)  # NumPy draws: nothing compiled
  fn = jax.jit(lambda z: model.apply(variables, z, train=False))
  with pytest.raises(AssertionError):
    # The tolerance of the invariance test above: strided subsampling must fail it.
    assert_shift_invariant(fn, x, (1, 0), rtol=1e-4)
