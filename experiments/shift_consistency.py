"""Shift consistency of strided, blurred (Zhang 2019) and APS (Chaman & Dokmanić 2021) CNNs.

Trains the same architecture three times, with ``downsample='stride'``
(plain strided pooling/convolution), ``'blur'`` (``BlurPool``/``MaxBlurPool``)
and ``'aps'`` (``PolyphaseDownsample``), then measures test accuracy and
shift consistency under both protocols of ``cnnjax.testing.shift_consistency``
(``'circular'``: two random circular shifts; ``'crop'``: two random crops of
the zero-padded image). Writes ``results.md`` (a markdown table with the
published anchors), ``results.json`` and ``consistency.png`` to ``--workdir``;
each training run lives in ``<workdir>/<model>-<downsample>/``.

Models, both with circular padding so that APS can be exactly invariant:

* ``shift_lenet``: LeNet-5's layout (conv 5x5 → pool → conv 5x5 → pool → 120 →
  84 → classes) with a global average pool where LeNet flattens: flattening
  ties every feature to a position, so no downsampling can make it invariant.
* ``resnet18_cifar`` with ``padding='CIRCULAR'`` (the zoo's ResNet-18, CIFAR stem).

Commands::

  python experiments/shift_consistency.py --workdir runs/shift            # digits, both models, 30 epochs
  python experiments/shift_consistency.py --workdir runs/shift_q --quick  # under 3 minutes on CPU
  python experiments/shift_consistency.py --workdir runs/shift_c10 --dataset cifar10 --models resnet18_cifar
  python experiments/shift_consistency.py --workdir runs/shift16 --models resnet18_cifar \
      --epochs 10 --resnet_width 16 --image_size 16     # digits upsampled to 16x16

(``--dataset cifar10`` needs ``python -m cnnjax.data.prepare cifar10`` first.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import numpy as np

from cnnjax import data as data_lib
from cnnjax import layers, models
from cnnjax.models.base import check_image_input
from cnnjax.testing import shift_consistency
from cnnjax.train import restore_checkpoint, train_and_evaluate
from cnnjax.train.config import base_config, lock

VARIANTS = ("stride", "blur", "aps")

#: Published numbers, quoted beside ours (different data, models and budgets).
ANCHORS = (
    ("ResNet-50, ImageNet (Zhang 2019)", "stride", "76.16%", "—", "89.20%"),
    ("ResNet-50, ImageNet (Zhang 2019)", "blur (Bin-5)", "77.04%", "—", "91.31%"),
    ("ResNet-18, CIFAR-10 (Chaman & Dokmanić 2021)", "aps", "no loss of accuracy", "100%", "—"),
)


class ShiftLeNet(nn.Module):
  """LeNet-5's layout with circular padding and a global average pool.

  conv 5x5 → ReLU → pool 2 → conv 5x5 → ReLU → pool 2 → global average pool →
  dense 120 → dense 84 → head. The pools are ``downsample``: ``'stride'`` a
  2x2 max-pool with stride 2, ``'blur'`` a ``MaxBlurPool`` (circular), ``'aps'``
  a dense circular 2x2 max-pool then ``PolyphaseDownsample``. With ``'aps'``
  the network is exactly invariant to circular shifts.

  Attributes:
    num_classes: output logits.
    downsample: ``'stride'``, ``'blur'`` or ``'aps'``.
    features: channels of the two convolutions.
    padding: padding of the convolutions.
  """

  num_classes: int = 10
  downsample: str = "stride"
  features: Sequence[int] = (32, 64)
  padding: str = "CIRCULAR"

  def _pool(self, x, name):
    if self.downsample == "stride":
      return layers.MaxPool((2, 2), (2, 2), "VALID", name=name)(x)
    if self.downsample == "blur":
      return layers.MaxBlurPool((2, 2), pool_padding="CIRCULAR", padding="CIRCULAR", name=name)(x)
    if self.downsample == "aps":
      x = layers.MaxPool((2, 2), (1, 1), "CIRCULAR", name=name)(x)
      return layers.PolyphaseDownsample(strides=2, name=f"{name}_aps")(x)
    raise ValueError(f"downsample must be one of {VARIANTS}, got {self.downsample!r}")

  @nn.compact
  def __call__(self, x, train: bool = True):
    """``(N, H, W, C) -> (N, num_classes)`` logits (``train`` has no effect)."""
    del train
    check_image_input(x, "ShiftLeNet", None)
    for i, f in enumerate(self.features):
      x = nn.relu(layers.Conv(f, (5, 5), padding=self.padding, name=f"conv{i + 1}")(x))
      x = self._pool(x, f"pool{i + 1}")
    x = layers.GlobalAvgPool(name="global_pool")(x)
    x = nn.relu(nn.Dense(120, name="fc1")(x))
    x = nn.relu(nn.Dense(84, name="fc2")(x))
    self.sow("intermediates", "pre_logits", x)
    return nn.Dense(self.num_classes, name="head")(x)


def make_model(args: argparse.Namespace, model: str, downsample: str) -> nn.Module | None:
  """``ShiftLeNet`` for ``'shift_lenet'`` (passed to the engine as an object); ``None`` for a zoo name."""
  if model != "shift_lenet":
    models.spec(model)  # A ValueError naming the zoo's models.
    return None
  info = data_lib.dataset_info(args.dataset, data_dir=args.data_dir)
  return ShiftLeNet(num_classes=info.num_classes, downsample=downsample)


def make_config(args: argparse.Namespace, model: str, downsample: str):
  """The training config of one run (optimiser and budget set by ``--quick``)."""
  c = base_config()
  c.model.name = model  # For shift_lenet a label in config.json: the module is passed as an object.
  c.model.kwargs = {"downsample": downsample}
  if model.startswith("resnet"):
    c.model.kwargs.update(padding="CIRCULAR", num_filters=args.resnet_width)
  c.data.name = args.dataset
  c.data.data_dir = args.data_dir
  c.data.image_size = args.image_size
  c.batch_size = 64
  c.eval_batch_size = 120 if args.dataset == "digits" else 200
  c.num_epochs = float(args.epochs)
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 3e-3 if model == "shift_lenet" else 1e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = min(1.0, args.epochs / 4)
  c.seed = args.seed
  c.log_every_steps = 50
  c.progress_bar = False
  c.plots = False
  c.async_checkpointing = False
  c.max_to_keep = 1
  return lock(c)


def test_images(args: argparse.Namespace) -> np.ndarray:
  """The test split, normalised as in training, ``(N, H, W, C)`` float32."""
  loader = data_lib.make_loader(args.dataset, "test", batch_size=200, train=False, seed=0,
                                data_dir=args.data_dir, image_size=args.image_size or None)
  batches = [b["image"][np.asarray(b["mask"])] for b in loader]
  images = np.concatenate(batches)
  return images[:args.max_test_images] if args.max_test_images else images


def evaluate_run(args, config, run_dir: str, images: np.ndarray,
                 model: nn.Module | None = None) -> dict:
  """Restores the final state and measures both consistencies."""
  _, state, _ = restore_checkpoint(config, run_dir, model=model)
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  apply_fn = jax.jit(lambda x: state.apply_fn(variables, x, train=False))
  key = jax.random.key(args.seed)
  size = min(images.shape[1:3])
  circular = shift_consistency(apply_fn, images, max_shift=args.max_shift or size // 2,
                               protocol="circular", num_pairs=args.num_pairs, key=key,
                               batch_size=500)
  crop = shift_consistency(apply_fn, images, max_shift=args.crop_shift or max(1, size // 4),
                           protocol="crop", num_pairs=args.num_pairs, key=key, batch_size=500)
  return {"circular": circular, "crop": crop}


def write_results(workdir: str, rows: list[dict], args: argparse.Namespace) -> None:
  """``results.md``, ``results.json`` and ``consistency.png``."""
  lines = [
      f"# Shift consistency on {args.dataset}",
      "",
      f"Command: `{' '.join(['python', 'experiments/shift_consistency.py'] + list(args.argv))}`",
      "",
      "| model | downsample | test accuracy | circular consistency | crop consistency |",
      "| --- | --- | --- | --- | --- |",
  ]
  for r in rows:
    lines.append(f"| {r['model']} | {r['downsample']} | {100 * r['test_accuracy']:.2f}% | "
                 f"{100 * r['circular']:.2f}% | {100 * r['crop']:.2f}% |")
  for name, variant, acc, circ, crop in ANCHORS:
    lines.append(f"| *{name}* | {variant} | {acc} | {circ} | {crop} |")
  r0 = rows[0]
  lines += [
      "",
      f"Circular: two circular shifts per image, each uniform in [-{r0['circular_max_shift']}, "
      f"{r0['circular_max_shift']}] per axis (Chaman & Dokmanić 2021). Crop: the image zero-padded "
      f"by {r0['crop_max_shift']} on every side, two crops of the original size at offsets uniform "
      f"in [0, {2 * r0['crop_max_shift']}] per axis (Zhang 2019's protocol; Zhang crops 224 of 256 "
      f"ImageNet pixels). {r0['num_pairs']} pairs per image, {r0['num_images']} test images. "
      "Italic rows are published numbers on other data sets, for orientation only.",
  ]
  with open(os.path.join(workdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)

  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415
  labels = [f"{r['model']}\n{r['downsample']}" for r in rows]
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4))
  for k, (key, label) in enumerate([("test_accuracy", "test accuracy"),
                                    ("circular", "circular consistency"),
                                    ("crop", "crop consistency")]):
    ax.bar(x + (k - 1) * 0.27, [100 * r[key] for r in rows], 0.27, label=label)
  ax.set_xticks(x, labels, fontsize=8)
  ax.set_ylabel("%")
  ax.set_ylim(min(50, min(100 * min(r["circular"], r["crop"], r["test_accuracy"]) for r in rows) - 5), 101)
  ax.set_title(f"Shift consistency on {args.dataset}")
  ax.legend(loc="lower right", fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, "consistency.png"), dpi=120)
  plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="Output directory (runs, results.md, consistency.png).")
  p.add_argument("--quick", action="store_true", help="Small budget: 3 epochs, narrow ResNet, 2 pairs.")
  p.add_argument("--dataset", default="digits", help="'digits' (embedded) or a prepared TFDS name, e.g. 'cifar10'.")
  p.add_argument("--data_dir", default=None, help="TFDS data directory.")
  p.add_argument("--image_size", type=int, default=0,
                 help="Resize images to this square size (0: as stored; e.g. 32 upsamples the 8x8 digits).")
  p.add_argument("--models", default="shift_lenet,resnet18_cifar", help="Comma-separated model names.")
  p.add_argument("--variants", default=",".join(VARIANTS), help="Comma-separated downsample modes.")
  p.add_argument("--epochs", type=float, default=None, help="Epochs per run (default 30, quick 3).")
  p.add_argument("--resnet_width", type=int, default=None, help="ResNet num_filters (default 64, quick 8).")
  p.add_argument("--num_pairs", type=int, default=None, help="Shift pairs per test image (default 5, quick 2).")
  p.add_argument("--max_shift", type=int, default=None, help="Circular protocol's largest shift (default H // 2).")
  p.add_argument("--crop_shift", type=int, default=None, help="Crop protocol's padding (default H // 4).")
  p.add_argument("--max_test_images", type=int, default=0, help="Evaluate on the first N test images (0: all).")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--fresh", action="store_true", help="Retrain runs that already exist.")
  args = p.parse_args(argv)
  args.argv = list(sys.argv[1:] if argv is None else argv)
  args.epochs = args.epochs if args.epochs is not None else (3.0 if args.quick else 30.0)
  args.resnet_width = args.resnet_width or (8 if args.quick else 64)
  args.num_pairs = args.num_pairs or (2 if args.quick else 5)
  for v in args.variants.split(","):
    if v not in VARIANTS:
      p.error(f"--variants: {v!r} is not one of {VARIANTS}")
  return args


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  images = test_images(args)
  rows = []
  for model in args.models.split(","):
    for downsample in args.variants.split(","):
      start = time.time()
      config = make_config(args, model, downsample)
      run_dir = os.path.join(args.workdir, f"{model}-{downsample}")
      net = make_model(args, model, downsample)
      summary = train_and_evaluate(config, run_dir, model=net, fresh=args.fresh)
      result = evaluate_run(args, config, run_dir, images, net)
      rows.append({
          "model": model, "downsample": downsample,
          "test_accuracy": float(summary["test_accuracy"]),
          "circular": result["circular"].value, "crop": result["crop"].value,
          "circular_max_shift": result["circular"].max_shift,
          "crop_max_shift": result["crop"].max_shift,
          "num_pairs": result["circular"].num_pairs, "num_images": result["circular"].num_images,
          "wall_time_s": time.time() - start,
      })
      print(f"{model:16s} {downsample:7s} acc {rows[-1]['test_accuracy']:.4f}  circular "
            f"{rows[-1]['circular']:.4f}  crop {rows[-1]['crop']:.4f}  ({rows[-1]['wall_time_s']:.0f} s)",
            flush=True)
  write_results(args.workdir, rows, args)
  print(f"wrote {os.path.join(args.workdir, 'results.md')}")
  return rows


if __name__ == "__main__":
  main()
