"""Pictures of a trained run: filters, activation maps, and the hand-crafted filters.

Restores the newest checkpoint of a run made by ``experiments/train.py`` and
writes PNG files to ``--out`` (default ``<workdir>/plots/inspect``):

* ``filters_<layer>.png``: the first convolution's filters, min-max per filter;
* ``kernels_<layer>_<index>.png``: the ``C_in`` kernels of one filter of the
  second convolution;
* ``input.png`` and ``activations_<layer>.png``: one test image and the
  activation maps it produces in each top-level layer with a spatial output;
* ``hand_crafted.png``: a 3x3 Gaussian blur, the Sobel kernels and the cross
  detector applied with ``cnnjax.ops.conv`` to a photograph shipped with
  scikit-learn; ``cross.png``: the cross detector on a 5x5 plus of ones (``cross_image``).

Commands::

  python experiments/train.py --config experiments/configs/digits_cnn.py --workdir runs/digits
  python experiments/visualize.py --workdir runs/digits [--out DIR] [--index 0] [--layers conv1,conv3]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from cnnjax import inspect as ci
from cnnjax.train import load_run


def _conv_kernels(variables, names: list[str]) -> list[tuple[str, np.ndarray]]:
  """``(module path, kernel)`` of the 2-D convolutions, in call order."""
  out = []
  for name in names:
    node = variables["params"]
    for part in name.split("/"):
      node = node.get(part, {}) if hasattr(node, "get") else {}
    kernel = node.get("kernel") if hasattr(node, "get") else None
    if kernel is not None and np.ndim(kernel) == 4:
      out.append((name, np.asarray(kernel)))
  return out


def make_pictures(workdir: str, out: str | None = None, *, index: int = 0,
                  layers: list[str] | None = None) -> list[str]:
  """Writes the pictures of a run; returns the paths written."""
  run = load_run(workdir)
  out = out or os.path.join(run.workdir, "plots", "inspect")
  os.makedirs(out, exist_ok=True)
  images, labels = ci.split_arrays(run.config.data.name, run.config.data.test_split,
                                   data_dir=run.config.data.data_dir)
  if not 0 <= index < len(images):
    raise ValueError(f"--index must be in [0, {len(images)}) for the {len(images)} test images, "
                     f"got {index}")
  x = images[index:index + 1]
  names = ci.layer_names(run.model, run.variables, x)
  split = run.config.data.test_split
  # Every title says whose picture it is: model, data set and run directory.
  who = f"{run.config.model.name} on {run.config.data.name} ({run.workdir})"
  written = []

  convs = _conv_kernels(run.variables, names)
  if convs:
    name, kernel = convs[0]
    written.append(ci.plot_filters(kernel, os.path.join(out, f"filters_{_slug(name)}.png"),
                                   title=f"{who}\n{name}: {kernel.shape[-1]} filters {kernel.shape} "
                                         f"(HWIO), min-max per filter"))
  if len(convs) > 1:
    name, kernel = convs[1]
    written.append(ci.plot_filter_kernels(kernel, 0, os.path.join(out, f"kernels_{_slug(name)}_0.png"),
                                          title=f"{who}\n{name}: the {kernel.shape[2]} kernels of filter 0"))

  logits = np.asarray(run.model.apply(run.variables, x, train=False))[0]
  picture = ci.filters.minmax(x[0])
  written.append(ci.filters.save_image(
      picture, os.path.join(out, "input.png"),
      title=f"{who}\n{split} split image {index}: label {labels[index]}, predicted "
            f"{int(np.argmax(logits))}",
      scale=4.0))
  if layers is None:
    shapes = ci.activations(run.model, run.variables, x,
                            layers=[n for n in names if "/" not in n and n != "pre_logits"])
    layers = [n for n, a in shapes.items() if a.ndim == 4]
  maps = ci.activations(run.model, run.variables, x, layers=layers)
  for name, value in maps.items():
    if value.ndim != 4:
      print(f"skipping {name}: output {value.shape} has no spatial map", file=sys.stderr)
      continue
    written.append(ci.plot_activations(value, os.path.join(out, f"activations_{_slug(name)}.png"),
                                       title=f"{who}\n{name}: activations {value.shape[1:]} of {split} "
                                             f"split image {index}"))

  written.append(ci.plot_hand_crafted(ci.sample_image("china.jpg"),
                                      os.path.join(out, "hand_crafted.png")))
  kernels = ci.hand_crafted_filters()
  cross = ci.cross_image()
  written.append(ci.plot_hand_crafted(cross, os.path.join(out, "cross.png"),
                                      filters={"cross": kernels["cross"]}))
  return written


def _slug(name: str) -> str:
  return name.replace("/", "_")


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="run directory of experiments/train.py")
  parser.add_argument("--out", default=None, help="output folder (default <workdir>/plots/inspect)")
  parser.add_argument("--index", type=int, default=0, help="test image whose activations to draw")
  parser.add_argument("--layers", default=None,
                      help="comma-separated module paths (default: top-level layers with a map)")
  args = parser.parse_args(argv)
  try:
    paths = make_pictures(args.workdir, args.out, index=args.index,
                          layers=args.layers.split(",") if args.layers else None)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  for path in paths:
    print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
