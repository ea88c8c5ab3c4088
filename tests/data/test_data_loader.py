"""The loader contract the training loop relies on, on the embedded digits."""

import json
import math

import numpy as np
import pytest

from cnnjax import data


def _loader(digits_dir, **kw):
  args = dict(batch_size=64, train=True, seed=3, data_dir=digits_dir, process_index=0, process_count=1)
  args.update(kw)
  split = args.pop("split", "train")
  return data.make_loader("digits", split, **args)


def _take(loader, n):
  it = iter(loader)
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("pipeline", ["memory", "grain"])
def test_train_batches(digits_dir, pipeline):
  loader = _loader(digits_dir, pipeline=pipeline)
  assert loader.steps_per_epoch == 1437 // 64 == len(loader)
  assert loader.num_examples == 1437 and loader.info.num_classes == 10
  batches = _take(loader, loader.steps_per_epoch + 1)
  for b in batches:
    assert b["image"].shape == (64, 8, 8, 1) and b["image"].dtype == np.float32
    assert b["label"].shape == (64,) and b["label"].dtype == np.int32
    assert b["mask"].dtype == np.bool_ and b["mask"].all()
  # One epoch visits distinct examples (the remainder dropped); the next is reshuffled.
  epoch = np.concatenate([b["image"].reshape(64, -1) for b in batches[:-1]])
  assert len(np.unique(epoch, axis=0)) > 0.95 * len(epoch)
  assert not np.array_equal(batches[0]["label"], batches[-1]["label"])


def test_normalised_with_train_statistics(digits_dir):
  loader = _loader(digits_dir, batch_size=1437, train=False)
  (batch,) = list(loader)
  assert abs(batch["image"].mean()) < 1e-4 and abs(batch["image"].std() - 1) < 1e-3


def test_same_seed_same_batches_other_seed_differs(digits_dir):
  a = _take(_loader(digits_dir), 3)
  b = _take(_loader(digits_dir), 3)
  c = _take(_loader(digits_dir, seed=4), 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["label"], c[0]["label"])


@pytest.mark.parametrize("pipeline", ["memory", "grain"])
def test_eval_covers_every_example_once(digits_dir, pipeline):
  loader = _loader(digits_dir, split="test", train=False, batch_size=64, pipeline=pipeline)
  assert len(loader) == math.ceil(360 / 64)
  full = _loader(digits_dir, split="test", train=False, batch_size=360)
  (reference,) = list(full)
  for _ in range(2):  # each pass is complete and starts from the beginning
    batches = list(loader)
    assert len(batches) == len(loader)
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 360 and not mask[360:].any() and mask[:360].all()
    images = np.concatenate([b["image"] for b in batches])[mask]
    np.testing.assert_array_equal(images, reference["image"])
    assert (batches[-1]["label"][~batches[-1]["mask"]] == 0).all()


def test_memory_and_grain_agree(digits_dir):
  kw = dict(batch_size=100, seed=7, train=True)
  memory = _take(_loader(digits_dir, pipeline="memory", **kw), 16)
  grain = _take(_loader(digits_dir, pipeline="grain", **kw), 16)
  for m, g in zip(memory, grain):
    for k in m:
      np.testing.assert_array_equal(m[k], g[k])


@pytest.mark.parametrize("pipeline", ["memory", "grain"])
def test_state_restore_across_epoch_boundary(digits_dir, pipeline):
  loader = _loader(digits_dir, pipeline=pipeline, batch_size=200)  # 7 steps per epoch
  it = iter(loader)
  for _ in range(6):
    next(it)
  state = json.loads(json.dumps(loader.get_state()))
  expected = [next(it) for _ in range(3)]  # steps 6 | 7, 8: crosses into epoch 1
  restored = _loader(digits_dir, pipeline=pipeline, batch_size=200)
  restored.set_state(state)
  got = _take(restored, 3)
  for e, g in zip(expected, got):
    np.testing.assert_array_equal(e["image"], g["image"])
    np.testing.assert_array_equal(e["label"], g["label"])
  assert restored.get_state()["epoch"] == 1


def test_state_moves_between_pipelines(digits_dir):
  memory = _loader(digits_dir, pipeline="memory", batch_size=200)
  _take(memory, 9)
  grain = _loader(digits_dir, pipeline="grain", batch_size=200)
  grain.set_state(memory.get_state())
  np.testing.assert_array_equal(_take(grain, 1)[0]["image"], _take(memory, 1)[0]["image"])


def test_state_from_another_loader_is_refused(digits_dir):
  with pytest.raises(ValueError, match="seed"):
    _loader(digits_dir, seed=1).set_state(_loader(digits_dir, seed=2).get_state())


@pytest.mark.parametrize("train", [True, False])
def test_process_shards_concatenate_to_the_global_batch(digits_dir, train):
  kw = dict(batch_size=96, train=train, split="train" if train else "test")
  single = _take(_loader(digits_dir, **kw), 5 if train else 4)
  shards = [_take(_loader(digits_dir, process_index=p, process_count=4, **kw), len(single))
            for p in range(4)]
  for step, batch in enumerate(single):
    for key in batch:
      local = [s[step][key] for s in shards]
      assert local[0].shape[0] == 24
      np.testing.assert_array_equal(np.concatenate(local), batch[key])


def test_subset(digits_dir):
  loader = _loader(digits_dir, subset=130, batch_size=64)
  assert loader.num_examples == 130 and loader.steps_per_epoch == 2
  ev = _loader(digits_dir, subset=130, batch_size=64, train=False)
  assert sum(b["mask"].sum() for b in ev) == 130


@pytest.mark.slow
def test_grain_worker_processes(digits_dir):
  kw = dict(pipeline="grain", batch_size=200)
  loader = _loader(digits_dir, worker_count=1, **kw)
  it = iter(loader)
  first = [next(it) for _ in range(8)]
  state = json.loads(json.dumps(loader.get_state()))
  expected = next(it)
  reference = _take(_loader(digits_dir, pipeline="memory", batch_size=200), 9)
  for a, b in zip(first + [expected], reference):
    np.testing.assert_array_equal(a["image"], b["image"])
  restored = _loader(digits_dir, worker_count=1, **kw)
  restored.set_state(state)
  np.testing.assert_array_equal(_take(restored, 1)[0]["image"], expected["image"])


@pytest.mark.parametrize("kw, match", [
    (dict(batch_size=10, process_count=3), "divisible by process_count"),
    (dict(pipeline="tf.data"), "pipeline must be one of"),
    (dict(batch_size=5000), "larger than the 1437"),
    (dict(split="validation"), "no split 'validation'"),
    (dict(worker_count=2), "needs pipeline='grain'"),
    (dict(process_index=4, process_count=4), "process_index"),
])
def test_argument_errors(digits_dir, kw, match):
  with pytest.raises(ValueError, match=match):
    _loader(digits_dir, **kw)
