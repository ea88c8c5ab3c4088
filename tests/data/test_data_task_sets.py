"""The embedded digits_rotation and digit_scenes builders, and loaders that carry their features."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnnjax import data
from cnnjax.data import digit_scenes, digits_rotation
from cnnjax.data import digits as digits_lib


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp("tfds_tasks"))
  for name in ("digits_rotation", "digit_scenes"):
    data.ensure_prepared(name, data_dir=path)
  return path


@pytest.fixture(scope="module")
def scenes():
  return digit_scenes.scene_arrays()


def test_infos(task_dir):
  assert data.dataset_info("digits_rotation", data_dir=task_dir) == data.DatasetInfo(
      name="digits_rotation", image_shape=(24, 24, 1), num_classes=10,
      splits={"train": 1437, "test": 360}, num_targets=1)
  assert data.dataset_info("digit_scenes", data_dir=task_dir) == data.DatasetInfo(
      name="digit_scenes", image_shape=(64, 64, 1), num_classes=11,
      splits={"train": 1000, "test": 250}, segmentation=True)


def test_rotation_targets_are_the_seeded_angles_of_the_digits_split(task_dir):
  source = tfds.data_source("digits_rotation", split="test", data_dir=task_dir, download=False)
  arrays = digits_rotation.rotation_arrays()["test"]
  angles = digits_rotation.angles()
  assert np.all(np.abs(angles) <= 45.0) and angles.std() > 20  # spread over the whole range
  by_key = {int(k): (img, t, label) for img, t, label, k in zip(*arrays)}
  for example in source.__getitems__(range(0, 360, 37)):
    match = [k for k, (img, _, _) in by_key.items() if np.array_equal(img, example["image"])]
    assert len(match) == 1
    _, target, label = by_key[match[0]]
    assert example["target"].dtype == np.float32 and example["target"] == target
    assert example["target"][0] == angles[match[0]] and example["label"] == label


def test_a_rotation_by_zero_keeps_the_upscaled_digit_centred():
  digit = np.zeros((8, 8, 1), np.uint8)
  digit[2:6, 3:5] = 255
  out = digits_rotation.rotated_digit(digit, 0.0)
  assert out.shape == (24, 24, 1)
  assert not out[:4].any() and not out[-4:].any()  # the 16x16 digit sits 4 pixels in
  turned = digits_rotation.rotated_digit(digit, 90.0)
  # A quarter turn of the vertical bar is a horizontal bar.
  rows, cols = np.nonzero(turned[..., 0] > 128)
  assert np.ptp(cols) > np.ptp(rows)


def test_scenes_hold_two_to_four_digits_with_labels_on_their_ink(scenes):
  arrays = scenes
  for split, count in (("train", 1000), ("test", 250)):
    images, maps, num = arrays[split]
    assert images.shape == maps.shape == (count, 64, 64, 1)
    assert set(np.unique(num)) == {2, 3, 4}
    assert maps.max() <= 10
    # Ink is labelled, background is not; no label outside the ink.
    assert np.all(images[maps > 0] >= digit_scenes.INK_THRESHOLD)
    assert np.all(maps[images >= digit_scenes.INK_THRESHOLD] > 0)
  # Fixed: the same scenes every time (seeded generator).
  rng = np.random.default_rng(digit_scenes.TEST_SEED)
  images, labels, _ = digits_lib.digits_arrays()["test"]
  first = digit_scenes.make_scene(rng, images, labels)
  np.testing.assert_array_equal(first[1], arrays["test"][1][0])


def test_make_scene_never_overlaps_boxes():
  rng = np.random.default_rng(5)
  images = np.full((3, 8, 8, 1), 255, np.uint8)  # all ink: a box is a solid square
  for _ in range(50):
    _, mask, count = digit_scenes.make_scene(rng, images, np.array([0, 1, 2]))
    labelled = int((mask > 0).sum())
    sizes = labelled  # disjoint squares: the labelled area is the sum of their areas
    assert sizes in {a + b + c + d for a in (256, 400, 576) for b in (256, 400, 576)
                     for c in (0, 256, 400, 576) for d in (0, 256, 400, 576)}
    assert 2 <= count <= 4


@pytest.mark.parametrize("pipeline", ["memory", "grain"])
def test_loaders_carry_targets_and_segmentation(task_dir, scenes, pipeline):
  kw = dict(batch_size=100, train=False, seed=0, data_dir=task_dir, pipeline=pipeline,
            process_index=0, process_count=1)
  last = list(data.make_loader("digits_rotation", "test", **kw))[-1]
  assert last["target"].shape == (100, 1) and last["target"].dtype == np.float32
  assert not last["target"][~last["mask"]].any()  # padded rows are zero
  batches = list(data.make_loader("digit_scenes", "test", **kw))
  assert batches[0]["segmentation"].shape == (100, 64, 64)
  assert batches[0]["segmentation"].dtype == np.int32
  maps = np.concatenate([b["segmentation"][b["mask"]] for b in batches])
  # The stored order is TFDS's; the maps are the generated ones, each once.
  assert sorted(m.tobytes() for m in maps) == sorted(
      m.astype(np.int32).tobytes() for m in scenes["test"][1][..., 0])
