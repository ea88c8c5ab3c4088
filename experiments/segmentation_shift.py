"""Shift consistency of U-Nets on ``digit_scenes``: strided, blurred and APS down-sampling.

Trains ``experiments/configs/digit_scenes_unet.py`` three times, with
``downsample='stride'``, ``'blur'`` and ``'aps'`` (each decoder stage
up-samples on the grid its encoder stage kept; see ``cnnjax.models.unet``),
then measures the test mean IoU and the per-pixel shift consistency of
``cnnjax.testing.shift_consistency`` under both protocols (circular: shifts
up to half the image; crop: zero padding of 8 pixels). Writes ``results.md``
and ``results.json`` to ``--workdir``; each run lives in
``<workdir>/unet-<downsample>/``. Needs the task-aware engine
(``config.task = 'segmentation'``).

Command::

  python experiments/segmentation_shift.py --workdir runs/seg_shift
  python experiments/segmentation_shift.py --workdir runs/seg_shift_q --epochs 3 --config_variant smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import jax
import numpy as np

from cnnjax import data as data_lib
from cnnjax.testing import shift_consistency
from cnnjax.train import train_and_evaluate
from cnnjax.train.loop import restore_checkpoint

ROOT = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ("stride", "blur", "aps")


def make_config(args: argparse.Namespace, downsample: str):
  """The digit_scenes_unet config with ``downsample`` (and ``--epochs``) set."""
  path = os.path.join(ROOT, "configs", "digit_scenes_unet.py")
  spec = importlib.util.spec_from_file_location("digit_scenes_unet", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(args.config_variant or None)
  with config.unlocked():
    config.model.kwargs = dict(config.model.kwargs.to_dict() if hasattr(config.model.kwargs, "to_dict")
                               else config.model.kwargs, downsample=downsample)
    if args.epochs:
      config.num_epochs = float(args.epochs)
    config.seed = args.seed
    config.progress_bar = False
  return config


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--epochs", type=float, default=0, help="Override the config's epochs (0: keep).")
  p.add_argument("--config_variant", default="", help="'' or 'smoke'.")
  p.add_argument("--num_pairs", type=int, default=3)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args(argv)
  os.makedirs(args.workdir, exist_ok=True)
  loader = data_lib.make_loader("digit_scenes", "test", batch_size=50, train=False, seed=0)
  images = np.concatenate([b["image"][b["mask"]] for b in loader])
  rows = []
  for downsample in args.variants.split(","):
    config = make_config(args, downsample)
    run_dir = os.path.join(args.workdir, f"unet-{downsample}")
    summary = train_and_evaluate(config, run_dir)
    _, state, _ = restore_checkpoint(config, run_dir)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    apply_fn = jax.jit(lambda x, v=variables, s=state: s.apply_fn(v, x, train=False))
    key = jax.random.key(args.seed)
    circular = shift_consistency(apply_fn, images, max_shift=images.shape[1] // 2,
                                 protocol="circular", num_pairs=args.num_pairs, key=key, batch_size=50)
    crop = shift_consistency(apply_fn, images, max_shift=8, protocol="crop",
                             num_pairs=args.num_pairs, key=key, batch_size=50)
    rows.append({"downsample": downsample, "test_mean_iou": float(summary["test_mean_iou"]),
                 "test_pixel_accuracy": float(summary["test_pixel_accuracy"]),
                 "circular": circular.value, "crop": crop.value})
    print(rows[-1], flush=True)
  lines = ["| U-Net downsample | test mean IoU | pixel accuracy | circular consistency | crop consistency |",
           "| --- | --- | --- | --- | --- |"]
  lines += [f"| {r['downsample']} | {r['test_mean_iou']:.4f} | {100 * r['test_pixel_accuracy']:.2f}% | "
            f"{100 * r['circular']:.2f}% | {100 * r['crop']:.2f}% |" for r in rows]
  lines += ["", f"Command: `python experiments/segmentation_shift.py {' '.join(sys.argv[1:] if argv is None else argv)}`"]
  with open(os.path.join(args.workdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  with open(os.path.join(args.workdir, "results.json"), "w") as f:
    json.dump(rows, f, indent=2)
  return rows


if __name__ == "__main__":
  main()
