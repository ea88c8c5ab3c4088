"""shift_consistency: the two protocols, their bookkeeping, and what they measure."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.testing import ShiftConsistency, shift_consistency
from cnnjax.testing.consistency import _shifted_pair


def _images(n=12, size=8, channels=3, seed=0):
  return np.random.default_rng(seed).standard_normal((n, size, size, channels)).astype(np.float32)


_invariant = jax.jit(ops.global_avg_pool)  # 3 "classes": the channel of largest mean
_corner = jax.jit(lambda x: x[:, 0, 0, :])  # looks at one pixel: changes with every shift


def test_a_circularly_invariant_classifier_scores_one():
  result = shift_consistency(_invariant, _images(), max_shift=7, protocol="circular", num_pairs=4, key=0)
  assert result == ShiftConsistency(value=1.0, protocol="circular", max_shift=7, num_pairs=4, num_images=12)


def test_a_position_dependent_classifier_scores_below_one():
  result = shift_consistency(_corner, _images(n=64), max_shift=3, num_pairs=3, key=jax.random.key(1))
  # Two independent shifts in [-3, 3]^2 coincide with probability 1/49; otherwise the
  # corner pixel is another pixel, of the same class with probability about 1/3.
  assert 0.2 < result.value < 0.6


def test_zero_shift_scores_one_for_any_classifier():
  for protocol in ("circular", "crop"):
    assert shift_consistency(_corner, _images(), max_shift=0, protocol=protocol, num_pairs=2).value == 1.0


def test_the_crop_protocol_sees_zero_fill():
  # Global average pooling ignores circular shifts but not crops with zero fill.
  images = _images(n=64, seed=2) + 0.3
  crop = shift_consistency(_invariant, images, max_shift=4, protocol="crop", num_pairs=3, key=3)
  assert crop.protocol == "crop" and crop.max_shift == 4 and 0.3 < crop.value < 1.0


def test_same_key_same_result_and_batching_does_not_matter():
  images = _images(n=20, seed=4)
  a = shift_consistency(_corner, images, max_shift=2, num_pairs=3, key=5)
  b = shift_consistency(_corner, images, max_shift=2, num_pairs=3, key=5, batch_size=7)
  assert a == b


def test_circular_pairs_are_rolls_and_crop_pairs_are_zero_filled_shifts():
  images = _images(n=4, size=6, seed=6)
  for protocol in ("circular", "crop"):
    first, second = _shifted_pair(jnp.asarray(images), jax.random.key(7), protocol, 2)
    for copy in (np.asarray(first), np.asarray(second)):
      for n in range(4):
        candidates = []
        for s in range(-2, 3):
          for t in range(-2, 3):
            if protocol == "circular":
              candidates.append(np.roll(images[n], (s, t), axis=(0, 1)))
            else:
              padded = np.pad(images[n], ((2, 2), (2, 2), (0, 0)))
              candidates.append(padded[2 - s:8 - s, 2 - t:8 - t])
        assert any(np.array_equal(copy[n], c) for c in candidates)


def test_argument_errors():
  images = _images()
  with pytest.raises(ValueError, match="protocol must be one of"):
    shift_consistency(_invariant, images, max_shift=1, protocol="random")
  with pytest.raises(ValueError, match="smaller than every spatial size"):
    shift_consistency(_invariant, images, max_shift=8)
  with pytest.raises(ValueError, match="max_shift must be a non-negative int"):
    shift_consistency(_invariant, images, max_shift=-1)
  with pytest.raises(TypeError, match="must be floating"):
    shift_consistency(_invariant, images.astype(np.int32), max_shift=1)
  with pytest.raises(ValueError, match=r"logits \(N, num_classes\) or per-pixel"):
    shift_consistency(lambda x: x[..., 0], images, max_shift=1)  # (N, H, W): neither form
  with pytest.raises(ValueError, match="num_pairs must be a positive int"):
    shift_consistency(_invariant, images, max_shift=1, num_pairs=0)


# --- dense predictions --------------------------------------------------------------

_pointwise = jax.jit(lambda x: x)  # per-pixel "logits": the class of a pixel is its largest channel
_ramp = jax.jit(lambda x: x + jnp.linspace(0.0, 3.0, x.shape[1])[None, :, None, None]
                * jnp.array([1.0, 0.0, -1.0]))  # the class depends on the row: not equivariant


@pytest.mark.parametrize("protocol", ["circular", "crop"])
def test_a_pointwise_dense_predictor_scores_one_in_the_images_frame(protocol):
  result = shift_consistency(_pointwise, _images(n=6), max_shift=3, protocol=protocol,
                             num_pairs=3, key=2)
  assert result.dense and result.value == 1.0


def test_a_position_dependent_dense_predictor_scores_below_one():
  for protocol in ("circular", "crop"):
    result = shift_consistency(_ramp, _images(n=6), max_shift=3, protocol=protocol, num_pairs=3, key=2)
    assert result.dense and 0.2 < result.value < 0.95, (protocol, result.value)


def test_dense_agreement_counts_only_pixels_both_crops_hold():
  from cnnjax.testing.consistency import _dense_agreement

  # Offsets 0 and 2 with max_shift 1 on a 4-pixel row: image pixels 1..2 lie in both crops.
  a = np.array([[[9, 0, 1, 9]]]).transpose(0, 2, 1)  # crop at 0: image pixel q at index q + 1
  b = np.array([[[1, 5, 9, 9]]]).transpose(0, 2, 1)  # crop at 2: image pixel q at index q - 1
  agree, compared = _dense_agreement(a, b, np.array([[0, 1]]), np.array([[2, 1]]), "crop", 1)
  assert (agree, compared) == (1, 2)
