"""Draws every augmentation in cnnjax.data.augment on a real photograph, as one PNG grid.

    python experiments/augmentations.py --out /tmp/aug

The photograph is scikit-learn's shipped sample image ``china.jpg`` (no
download), resized to 128x192. Each row is one augmentation, each column a
different key; the first column of the top row is the original. Mixup and
CutMix mix the photograph with its left-right mirror.
"""

from __future__ import annotations

import argparse
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--columns", type=int, default=5)
  args = parser.parse_args()

  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from sklearn.datasets import load_sample_image

  from cnnjax.data import augment

  photo = jnp.asarray(load_sample_image("china.jpg"), jnp.float32) / 255.0
  image = jax.image.resize(photo, (128, 192, 3), "linear")
  rows = {
      "random_crop(padding=16)": functools.partial(augment.random_crop, padding=16),
      "random_crop(reflect)": functools.partial(augment.random_crop, padding=16, pad_mode="reflect"),
      "horizontal_flip": augment.horizontal_flip,
      "vertical_flip": augment.vertical_flip,
      "rotate(degrees=30)": functools.partial(augment.rotate, degrees=30),
      "random_resized_crop": augment.random_resized_crop,
      "gaussian_blur(k=9, sigma=(0.1, 4))": functools.partial(augment.gaussian_blur, kernel_size=9, sigma=(0.1, 4.0)),
      "random_erasing(p=1)": functools.partial(augment.random_erasing, p=1.0, value=0.5),
      "color_jitter(.4, .4, .4, .1)": functools.partial(
          augment.color_jitter, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1),
      "salt_and_pepper(p=0.05)": functools.partial(augment.salt_and_pepper, p=0.05),
      "build('crop(padding=8), flip, rotate(degrees=10)')": augment.build(
          "crop(padding=8), flip, rotate(degrees=10)"),
  }
  keys = jax.random.split(jax.random.key(0), args.columns)
  grid = {name: np.asarray(jax.vmap(jax.jit(fn), in_axes=(0, None))(keys, image)) for name, fn in rows.items()}
  pair = jnp.stack([image, image[:, ::-1]])
  onehot = jax.nn.one_hot(jnp.array([0, 1]), 2)
  for name, mix in (("mixup(alpha=1)", functools.partial(augment.mixup, alpha=1.0)),
                    ("cutmix(alpha=1)", augment.cutmix)):
    outs = [mix(k, pair, onehot) for k in keys]
    grid[name] = np.stack([o[0][0] for o in outs])
    grid[name + " labels"] = np.stack([o[1][0] for o in outs])

  names = [n for n in grid if not n.endswith(" labels")]
  fig, axes = plt.subplots(len(names) + 1, args.columns, figsize=(2.2 * args.columns, 1.6 * (len(names) + 1)))
  axes[0, 0].imshow(np.clip(np.asarray(image), 0, 1))
  axes[0, 0].set_title("original", fontsize=7)
  for c in range(1, args.columns):
    axes[0, c].axis("off")
  for r, name in enumerate(names, start=1):
    for c in range(args.columns):
      axes[r, c].imshow(np.clip(grid[name][c], 0, 1))
      if name + " labels" in grid:
        axes[r, c].set_title(f"labels {np.round(grid[name + ' labels'][c], 2)}", fontsize=6)
    axes[r, 0].set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "augmentations.png")
  fig.savefig(path, dpi=110)
  print(path)


if __name__ == "__main__":
  main()
