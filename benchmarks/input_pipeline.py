"""Input pipeline throughput: the in-memory and the Grain paths of ``data.make_loader``.

For three data sets, examples/s of each pipeline (``train=True``, batch 128,
normalised float32 batches on the host) next to the rate at which the
training step of a model for that data consumes examples (the engine's
``pmap(train_step)`` on one CPU device, measured in the same run):

* ``digits``: the real embedded data set (8x8x1, 1,437 training images),
  model ``digits_cnn``;
* ``mnist``-shaped: synthetic 28x28x1 PNG examples written as a real TFDS
  ``mnist`` ArrayRecord data set in a temporary directory, model ``lenet5``;
* ``cifar10``-shaped: the same for 32x32x3, models ``lenet5`` and
  ``resnet18_cifar``.

Synthetic pixels are uniform noise, which PNG compresses worse than real
photos, so decoding costs at least as much as on the real data. The target:
each pipeline delivers at least 3x what the step consumes. Run it on an idle
machine::

  python benchmarks/input_pipeline.py
  python benchmarks/input_pipeline.py --examples 60000 --workers 0,2
  python benchmarks/input_pipeline.py --smoke
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
import time
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
import train_step as train_step_bench  # noqa: E402

#: (data set, models whose step rate the pipeline must feed).
DATASETS = (("digits", ("digits_cnn",)), ("mnist", ("lenet5",)),
            ("cifar10", ("lenet5", "resnet18_cifar")))
TARGET = 3.0


def _png(image: np.ndarray) -> bytes:
  from PIL import Image

  mode = "L" if image.shape[-1] == 1 else "RGB"
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if mode == "L" else image, mode=mode).save(buffer, format="PNG")
  return buffer.getvalue()


def write_synthetic(name: str, data_dir: str, num_train: int, num_test: int, seed: int = 0) -> None:
  """Prepares TFDS builder ``name`` in ``data_dir`` as ArrayRecord, with random examples.

  The builder's own features, file layout and metadata are used (so
  ``tfds.data_source`` and ``cnnjax.data`` read it as the real data set); only
  the examples are replaced by random ``uint8`` images and labels.
  """
  import tensorflow_datasets as tfds

  builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  features = builder.info.features
  shape = features["image"].shape
  classes = features["label"].num_classes

  def generate(n: int, split_seed: int):
    rng = np.random.default_rng([seed, split_seed])
    for i in range(n):
      example = {"image": _png(rng.integers(0, 256, shape, dtype=np.uint8)),
                 "label": int(rng.integers(classes))}
      if "id" in features:
        example["id"] = f"synthetic_{i}"
      yield i, example

  def split_generators(self, dl_manager):
    del self, dl_manager
    return {"train": generate(num_train, 0), "test": generate(num_test, 1)}

  with mock.patch.object(type(builder), "_split_generators", split_generators):
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))


def pipeline_contender(name: str, data_dir: str, pipeline: str, batch: int,
                       workers: int = 0) -> _common.Contender:
  """Iterates ``make_loader(name, 'train', pipeline=...)``; setup (reading, starting) timed apart."""
  from cnnjax import data

  holder: dict[str, Any] = {}

  def setup():
    loader = data.make_loader(name, "train", batch_size=batch, train=True, seed=0,
                              data_dir=data_dir, pipeline=pipeline, worker_count=workers,
                              process_index=0, process_count=1)
    holder["iter"] = iter(loader)
    holder["loader"] = loader

  def run(n: int):
    it = holder["iter"]
    for _ in range(n):
      b = next(it)
    holder["last"] = b

  label = pipeline if not workers else f"{pipeline} ({workers} workers)"
  return _common.Contender(label, run, batch, setup=setup)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--examples", type=int, default=10000,
                      help="training examples of the synthetic mnist/cifar10 data sets")
  parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per pipeline")
  parser.add_argument("--step-seconds", type=float, default=5.0, help="timed seconds per step")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--workers", default="0", help="Grain worker counts to time, e.g. '0,2'")
  parser.add_argument("--data-dir", default=None, help="where to write the synthetic data sets "
                      "(default: a temporary directory)")
  parser.add_argument("--datasets", default=",".join(d for d, _ in DATASETS))
  parser.add_argument("--no-step", action="store_true", help="skip the training-step rates")
  _common.add_out_arguments(parser, "benchmarks/results/input_pipeline.json",
                            "where the JSON record is written")
  parser.add_argument("--smoke", action="store_true", help="tiny data, a few batches")
  parser.add_argument("--allow-xla-flags", action="store_true")
  args = parser.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if not args.allow_xla_flags:
    _common.check_single_device_xla_flags()
  if args.smoke:
    args.batch, args.examples, args.seconds, args.step_seconds, args.rounds = 16, 64, 0.1, 0.1, 1
  wanted = [d for d in args.datasets.split(",") if d]
  workers = [int(w) for w in args.workers.split(",") if w]

  tmp = tempfile.TemporaryDirectory(prefix="cnnjax_bench_data_")
  data_dir = args.data_dir or tmp.name
  record: dict[str, Any] = {"benchmark": "input_pipeline", "environment": _common.environment(),
                            "batch": args.batch, "examples": args.examples, "results": []}
  rows = []
  for name, model_names in DATASETS:
    if name not in wanted:
      continue
    if name != "digits":
      t0 = time.perf_counter()
      if not os.path.exists(os.path.join(data_dir, name)):
        write_synthetic(name, data_dir, args.examples, max(args.examples // 10, args.batch))
      print(f"{name}: wrote {args.examples} synthetic examples in {time.perf_counter() - t0:.1f} s")
    from cnnjax import data
    info = data.dataset_info(name, data_dir=data_dir)
    print(f"{name} {info.image_shape}, {info.splits['train']} training examples:", flush=True)
    group = [pipeline_contender(name, data_dir, "memory", args.batch)]
    group += [pipeline_contender(name, data_dir, "grain", args.batch, w) for w in workers]
    _common.interleave(group, args.seconds, args.rounds)
    pipes = {c.name: c.summary() for c in group}
    steps = {}
    if not args.no_step:
      for model_name in model_names:
        images, labels = _step_batch(info, args.batch)
        c = train_step_bench.cnnjax_contender(model_name, images, labels)
        c.info.pop("_final_loss")
        _common.interleave([c], args.step_seconds, args.rounds)
        steps[model_name] = c.summary()
    record["results"].append({"dataset": name, "image_shape": info.image_shape,
                              "pipelines": pipes, "steps": steps})
    for pipe_name, p in pipes.items():
      for model_name, s in (steps.items() or [(None, {})]):
        need = s.get("median", math.nan)
        have = p.get("median", math.nan)
        r = have / need if need == need else math.nan
        rows.append([name, pipe_name, _common.fmt_rate(p), f"{p.get('setup_s', math.nan):.2f}",
                     model_name or "—", _common.fmt_rate(s) if s else "—",
                     "—" if math.isnan(r) else f"{r:.1f}"])
  record["environment"]["loadavg_at_end"] = os.getloadavg()
  _common.write_json(args.out, record)
  print()
  print(_common.markdown_table(
      ["data set", "pipeline", "examples/s median (min–max)", "setup s", "model",
       "step consumes examples/s", f"pipeline / step (target ≥ {TARGET:g})"], rows))
  print(f"\nwritten {args.out}; load average {os.getloadavg()}")
  tmp.cleanup()
  errors = [c for r in record["results"] for c in r["pipelines"].values() if c.get("error")]
  if args.smoke and errors:
    print("errors:", errors)
    return 1
  return 0


def _step_batch(info, batch: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(0)
  images = rng.standard_normal((batch, *info.image_shape), dtype=np.float32)
  labels = rng.integers(0, info.num_classes, batch).astype(np.int32)
  return images, labels


if __name__ == "__main__":
  sys.exit(main())
