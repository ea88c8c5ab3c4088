"""The embedded ``digits_rotation`` data set: real handwritten digits rotated by a known angle.

A regression task on real handwriting: every one of scikit-learn's 1,797
digits (``cnnjax.data.digits``) is upscaled from 8x8 to 16x16 (bilinear),
centred on a black 24x24 canvas (so that a rotation by up to 45 degrees keeps
the whole digit: the 16x16 box's diagonal is 22.6 pixels) and rotated
counter-clockwise about the canvas centre by an angle drawn uniformly from
``[-45, 45]`` degrees (bilinear, black fill). The target is the angle.

* Features: ``image`` ``(24, 24, 1) uint8`` PNG; ``target`` ``(1,) float32``,
  the angle in degrees (counter-clockwise positive); ``label``
  ``ClassLabel(10)``, the digit (not the regression target, kept for analysis).
* Angles: ``np.random.default_rng(ANGLE_SEED).uniform(-45, 45, 1797)``,
  indexed by the digit's key (its index in ``load_digits``), so an example's
  angle does not depend on the split.
* Splits: those of ``digits`` (``train`` 1,437 / ``test`` 360, stratified by
  digit, seed 0); keys are the ``load_digits`` indices.

Why ``[-45, 45]``: a range symmetric about zero and well inside ``(-90, 90)``
keeps every angle unambiguous even for the digits whose shape is close to
symmetric under a half turn (0, 1, 8), and a 6 stays distinguishable from a 9.

Prepared offline in about a second, atomically and under a file lock, as
``digits`` is (``cnnjax.data.digits.prepare_builder``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from cnnjax.data import digits as digits_lib
from cnnjax.data.builders import encode_png

NAME = "digits_rotation"
ANGLE_SEED = 0
MAX_ANGLE = 45.0
DIGIT_SIZE = 16
CANVAS = 24


def angles() -> np.ndarray:
  """The rotation of every ``load_digits`` digit, by key: ``(1797,) float32`` degrees."""
  return np.random.default_rng(ANGLE_SEED).uniform(-MAX_ANGLE, MAX_ANGLE, 1797).astype(np.float32)


def rotated_digit(image: np.ndarray, angle: float) -> np.ndarray:
  """One digit ``(8, 8, 1) uint8`` -> the rotated ``(24, 24, 1) uint8`` canvas (see module docstring)."""
  from PIL import Image

  big = Image.fromarray(image[..., 0], mode="L").resize((DIGIT_SIZE, DIGIT_SIZE), Image.BILINEAR)
  canvas = Image.new("L", (CANVAS, CANVAS), 0)
  offset = (CANVAS - DIGIT_SIZE) // 2
  canvas.paste(big, (offset, offset))
  # PIL rotates counter-clockwise about the centre for positive angles.
  rotated = canvas.rotate(float(angle), resample=Image.BILINEAR, fillcolor=0)
  return np.asarray(rotated, np.uint8)[..., None]


def rotation_arrays() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
  """The data set as arrays, split as the builder splits it.

  Returns:
    ``{'train': (images, targets, labels, keys), 'test': (...)}``: ``images``
    ``(N, 24, 24, 1) uint8``, ``targets`` ``(N, 1) float32`` degrees,
    ``labels`` ``(N,) int64`` digits, ``keys`` ``(N,)``.
  """
  all_angles = angles()
  out = {}
  for split, (images, labels, keys) in digits_lib.digits_arrays().items():
    rotated = np.stack([rotated_digit(img, all_angles[k]) for img, k in zip(images, keys)])
    out[split] = (rotated, all_angles[keys][:, None], labels, keys)
  return out


class DigitsRotation(tfds.core.GeneratorBasedBuilder):
  """scikit-learn's digits, each rotated by a seeded angle; the target is the angle (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Angles uniform in [-45, 45] degrees, seed 0; splits of digits."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="Handwritten digits rotated by a seeded angle in [-45, 45] degrees; "
                    "target: the angle.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(CANVAS, CANVAS, 1), encoding_format="png"),
            "target": tfds.features.Tensor(shape=(1,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "target"),
        homepage="https://archive.ics.uci.edu/dataset/80",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download: the digits ship with scikit-learn.
    arrays = rotation_arrays()
    return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

  def _generate_examples(self, images, targets, labels, keys) -> Iterator[tuple[int, dict]]:
    for image, target, label, key in zip(images, targets, labels, keys):
      yield int(key), {"image": encode_png(image), "target": target, "label": int(label)}
