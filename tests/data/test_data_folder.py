"""Image folders: scanning, stratified seeded split, decoding, errors."""

import numpy as np
import pytest
from PIL import Image

from cnnjax import data
from cnnjax.data import folder as folder_lib
from testlib import assert_close


def _write(root, counts, size=(6, 5), mode="RGB", ext="png"):
  rng = np.random.default_rng(0)
  for name, n in counts.items():
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
      shape = (size[0], size[1], 3) if mode == "RGB" else size
      Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(
          root / name / f"{i:03d}.{ext}")
  return root


def test_split_is_stratified_seeded_and_disjoint(tmp_path):
  root = _write(tmp_path / "f", {"cat": 20, "dog": 10})
  a = folder_lib.scan_image_folder(str(root), fractions=(0.6, 0.2, 0.2), seed=1)
  b = folder_lib.scan_image_folder(str(root), fractions=(0.6, 0.2, 0.2), seed=1)
  c = folder_lib.scan_image_folder(str(root), fractions=(0.6, 0.2, 0.2), seed=2)
  assert a.class_names == ("cat", "dog") and a.image_shape == (6, 5, 3)
  assert a.splits == b.splits and a.splits != c.splits
  counts = {s: np.bincount(v.labels, minlength=2).tolist() for s, v in a.splits.items()}
  assert counts == {"train": [12, 6], "validation": [4, 2], "test": [4, 2]}
  paths = [set(v.paths) for v in a.splits.values()]
  assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
  assert len(set.union(*paths)) == 30


def test_loader_reads_pixels(tmp_path):
  root = _write(tmp_path / "g", {"a": 4, "b": 4}, mode="L")
  info = data.image_folder(str(root), name="tiny", fractions=(0.5, 0.25, 0.25), seed=0)
  assert info == data.DatasetInfo("tiny", (6, 5, 1), 2, {"train": 4, "validation": 2, "test": 2})
  assert "tiny" in data.registered_names()
  (batch,) = list(data.make_loader("tiny", "train", batch_size=4, train=False, seed=0,
                                   process_index=0, process_count=1))
  split = folder_lib.scan_image_folder(str(root), fractions=(0.5, 0.25, 0.25)).splits["train"]
  raw = np.stack([np.asarray(Image.open(p))[..., None] for p in split.paths]).astype(np.float32) / 255
  # Normalised with the train split's own statistics.
  # Statistics accumulated in another order (float32 over every pixel of the split):
  # 1e-4 of the largest normalised pixel.
  assert_close(batch["image"], (raw - raw.mean()) / raw.std(), rtol=1e-4)
  np.testing.assert_array_equal(batch["label"], split.labels)


def test_folder_prefix_name(tmp_path):
  root = _write(tmp_path / "h", {"x": 5, "y": 5, "z": 5})
  info = data.dataset_info(f"folder:{root}")
  assert info.num_classes == 3 and sum(info.splits.values()) == 15
  loader = data.make_loader(f"folder:{root}", "train", batch_size=3, train=True, seed=0,
                            pipeline="grain", process_index=0, process_count=1)
  assert next(iter(loader))["image"].shape == (3, 6, 5, 3)


def test_no_images(tmp_path):
  (tmp_path / "empty" / "cls").mkdir(parents=True)
  (tmp_path / "empty" / "cls" / "notes.txt").write_text("x")
  with pytest.raises(ValueError, match="has no images"):
    data.ensure_prepared(f"folder:{tmp_path / 'empty'}")
  with pytest.raises(ValueError, match="no class sub-folders"):
    folder_lib.scan_image_folder(str(tmp_path / "empty" / "cls"))
  with pytest.raises(ValueError, match="does not exist"):
    folder_lib.scan_image_folder(str(tmp_path / "missing"))


def test_mixed_sizes_need_an_image_size_and_the_error_names_the_files(tmp_path):
  root = _write(tmp_path / "m", {"a": 3})
  _write(root, {"b": 1}, size=(7, 7), ext="jpg")
  assert folder_lib.scan_image_folder(str(root)).image_shape == (None, None, 3)
  with pytest.raises(ValueError, match=r"variable size \(None, None, 3\) \(image folder .* mixes "
                                       r"image sizes: 6x5 \(HxW\): 3 files.*7x7 \(HxW\): 1 files, "
                                       r"e.g. b/000.jpg\); expected an image_size"):
    data.make_loader(f"folder:{root}", "train", batch_size=1, train=True, seed=0,
                     process_index=0, process_count=1)
  loader = data.make_loader(f"folder:{root}", "train", batch_size=2, train=True, seed=0,
                            image_size=4, process_index=0, process_count=1)
  assert next(iter(loader))["image"].shape == (2, 4, 4, 3)


def test_bad_fractions(tmp_path):
  root = _write(tmp_path / "q", {"a": 2})
  with pytest.raises(ValueError, match="summing to 1"):
    folder_lib.scan_image_folder(str(root), fractions=(0.5, 0.2, 0.2))
