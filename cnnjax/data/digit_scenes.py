"""The embedded ``digit_scenes`` data set: semantic segmentation of real handwritten digits.

Each example is a black 64x64 canvas holding two to four of scikit-learn's
real handwritten digits (``cnnjax.data.digits``), each upscaled from 8x8 to
a side drawn from ``DIGIT_SIZES`` (bilinear) and pasted at a uniformly random
position such that no two digits' boxes overlap. The label map gives every
pixel its class: 0 for background, ``d + 1`` for a pixel of digit ``d`` whose
upscaled intensity is at least ``INK_THRESHOLD`` (of 255).

* Features: ``image`` ``(64, 64, 1) uint8`` PNG; ``segmentation``
  ``LabeledImage`` ``(64, 64, 1) uint8`` PNG with 11 classes
  (``CLASS_NAMES``); ``num_digits`` ``int32``.
* Splits: ``train`` 1,000 scenes built only from the digits of the
  ``digits`` ``train`` split (seed ``TRAIN_SEED``), ``test`` 250 scenes only
  from its ``test`` split (seed ``TEST_SEED``): no handwritten digit appears
  in both. Keys are scene indices.

Prepared offline in a few seconds, atomically and under a file lock, as
``digits`` is (``cnnjax.data.digits.prepare_builder``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data import digits as digits_lib
from cnnjax.data.builders import encode_png

NAME = "digit_scenes"
CANVAS = 64
DIGIT_SIZES = (16, 20, 24)
NUM_DIGITS = (2, 3, 4)
INK_THRESHOLD = 64
NUM_TRAIN = 1000
NUM_TEST = 250
TRAIN_SEED = 1
TEST_SEED = 2
NUM_CLASSES = 11
CLASS_NAMES = ("background",) + tuple(f"digit_{d}" for d in range(10))


def _upscaled(image: np.ndarray, size: int) -> np.ndarray:
  from PIL import Image

  big = Image.fromarray(image[..., 0], mode="L").resize((size, size), Image.BILINEAR)
  return np.asarray(big, np.uint8)


def make_scene(rng: np.random.Generator, images: np.ndarray, labels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, int]:
  """One scene from a pool of digits.

  Args:
    rng: the generator every choice is drawn from.
    images: ``(M, 8, 8, 1) uint8`` digits to draw from.
    labels: ``(M,)`` their classes.

  Returns:
    ``(image (64, 64, 1) uint8, segmentation (64, 64, 1) uint8, num_digits)``.
  """
  count = int(rng.choice(NUM_DIGITS))
  image = np.zeros((CANVAS, CANVAS), np.uint8)
  mask = np.zeros((CANVAS, CANVAS), np.uint8)
  boxes: list[tuple[int, int, int]] = []
  while len(boxes) < count:
    size = int(rng.choice(DIGIT_SIZES))
    top, left = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
    # Boxes [top, top + size) x [left, left + size) must be disjoint.
    if any(top < t + s and t < top + size and left < l + s and l < left + size
           for t, l, s in boxes):
      continue
    boxes.append((top, left, size))
    index = int(rng.integers(len(images)))
    digit = _upscaled(images[index], size)
    image[top:top + size, left:left + size] = digit
    mask[top:top + size, left:left + size] = np.where(
        digit >= INK_THRESHOLD, labels[index] + 1, 0).astype(np.uint8)
  return image[..., None], mask[..., None], count


def scene_arrays() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The data set as arrays, split as the builder splits it.

  Returns:
    ``{'train': (images, segmentations, num_digits), 'test': (...)}``:
    ``images`` and ``segmentations`` ``(N, 64, 64, 1) uint8``, ``num_digits``
    ``(N,) int32``.
  """
  digits = digits_lib.digits_arrays()
  out = {}
  for split, seed, count in (("train", TRAIN_SEED, NUM_TRAIN), ("test", TEST_SEED, NUM_TEST)):
    rng = np.random.default_rng(seed)
    images, labels, _ = digits[split]
    scenes = [make_scene(rng, images, labels) for _ in range(count)]
    out[split] = (np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes]),
                  np.asarray([s[2] for s in scenes], np.int32))
  return out


class DigitScenes(tfds.core.GeneratorBasedBuilder):
  """64x64 scenes of 2-4 handwritten digits with per-pixel class labels (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "1,000/250 scenes, seeds 1/2, digit sides 16/20/24, ink >= 64."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Scenes of 2-4 real handwritten digits on 64x64 canvases; per-pixel "
                    "labels 0 background, 1-10 digit class + 1.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(CANVAS, CANVAS, 1), encoding_format="png"),
            "segmentation": tfds.features.LabeledImage(
                labels=list(CLASS_NAMES), shape=(CANVAS, CANVAS, 1), encoding_format="png"),
            "num_digits": tfds.features.Scalar(dtype=np.int32),
        }),
        supervised_keys=("image", "segmentation"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the digits ship with scikit-learn.
    arrays = scene_arrays()
    return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

  def _generate_examples(self, images, segmentations, num_digits) -> Iterator[tuple[int, dict]]:
    # PNG bytes are passed directly: TFDS's own numpy encoder needs TensorFlow.
    for key, (image, segmentation, count) in enumerate(zip(images, segmentations, num_digits)):
      yield key, {"image": encode_png(image), "segmentation": encode_png(segmentation),
                  "num_digits": int(count)}
