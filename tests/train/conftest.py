"""Fixtures for the training tests: a tiny CNN with BatchNorm and Dropout."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax.train.steps import AXIS


class TinyCNN(nn.Module):
  """Conv -> BatchNorm(axis_name) -> relu -> mean pool -> Dropout -> Dense.

  ``axis_name=None`` for the ``'jit'`` strategy (``Parallel.axis_name``).
  """
  num_classes: int = 3
  dropout_rate: float = 0.0
  dtype: jnp.dtype = jnp.float32
  axis_name: str | None = AXIS

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(4, (3, 3), dtype=self.dtype)(x)
    x = nn.BatchNorm(use_running_average=not train, axis_name=self.axis_name,
                     momentum=0.5, dtype=self.dtype)(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


@pytest.fixture(scope="session")
def tiny_cnn():
  return TinyCNN


@pytest.fixture
def make_batches():
  """``make_batches(n, batch_size)``: ``n`` synthetic (6, 6, 2) batches, seeded."""
  def make(n, batch_size, seed=0, num_classes=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
      labels = rng.integers(0, num_classes, batch_size).astype(np.int32)
      images = rng.normal(size=(batch_size, 6, 6, 2)).astype(np.float32)
      images += labels[:, None, None, None].astype(np.float32)
      out.append({"image": images, "label": labels,
                  "mask": np.ones(batch_size, bool)})
    return out
  return make
