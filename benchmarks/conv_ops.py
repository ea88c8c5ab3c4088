"""Convolution forward+backward on CPU: ``ops.conv`` (each lowering) vs ``flax.linen`` vs PyTorch.

A sweep of layer shapes from the models (LeNet-5, ResNet-18-CIFAR, ResNet-50,
MobileNet's depthwise layers, a transposed convolution, a convolution padded
wider than its kernel reaches), each timed as one
forward and backward pass (the gradient with respect to the kernel, and to
the input except for a first layer, whose input gradient training never
needs), float32, NHWC for JAX and NCHW for PyTorch. Contenders:

* ``lax``: ``ops.conv(..., lowering='lax')`` (``lax.conv_general_dilated``);
* ``chunked``: ``ops.conv(..., lowering='chunked')`` (``lax`` on chunks of
  ``ops.lowering.CHUNK_BATCH`` examples);
* ``matmul``: ``ops.conv(..., lowering='matmul')`` (im2col, one matrix product);
* ``subpixel``, ``taps``, ``per_group``: ``ops.conv_fast``'s formulations
  (transposed by output phase; depthwise by shifted multiply-adds; grouped as
  one convolution per group), timed only on the shapes they are for;
* ``flax``: ``flax.linen.Conv`` / ``ConvTranspose`` on the same shape;
* ``torch``: ``torch.nn.functional.conv2d`` / ``conv_transpose2d``.

The ``auto`` column is what ``ops.choose_lowering`` picks for the shape;
this sweep is the evidence for that rule. Run on an idle machine::

  python benchmarks/conv_ops.py                  # ~2 s per contender and shape
  python benchmarks/conv_ops.py --only lenet     # shapes whose name contains 'lenet'
  python benchmarks/conv_ops.py --parts          # + auto's forward / input / kernel gradient
  python benchmarks/conv_ops.py --only transposed --phase-chunk 8   # one chunk size for every phase
  python benchmarks/conv_ops.py --smoke
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Shape:
  """One convolution: input ``(batch, size, size, c_in)``, ``kernel``x``kernel`` to ``c_out``.

  ``padding`` is symmetric (PyTorch's); ``transpose`` makes it a stride-2
  transposed convolution (``lhs_dilation=2``, output twice the input);
  ``input_grad=False`` for a first layer.
  """

  name: str
  batch: int
  size: int
  c_in: int
  c_out: int
  kernel: int
  stride: int = 1
  padding: int = 0
  groups: int = 1
  transpose: bool = False
  input_grad: bool = True


SHAPES = (
    Shape("lenet conv1 b128", 128, 32, 3, 6, 5, input_grad=False),
    Shape("lenet conv1 b192", 192, 32, 3, 6, 5, input_grad=False),
    Shape("lenet conv1 b256", 256, 32, 3, 6, 5, input_grad=False),
    Shape("lenet conv1 b512", 512, 32, 3, 6, 5, input_grad=False),
    Shape("lenet conv1 b32", 32, 32, 3, 6, 5, input_grad=False),
    Shape("lenet conv2 b128", 128, 14, 6, 16, 5),
    Shape("lenet conv2 b256", 256, 14, 6, 16, 5),
    Shape("mnist conv1 b128 (1 ch)", 128, 28, 1, 32, 3, padding=1, input_grad=False),
    Shape("resnet-cifar stem b128", 128, 32, 3, 64, 3, padding=1, input_grad=False),
    Shape("resnet-cifar 3x3 64 b128", 128, 32, 64, 64, 3, padding=1),
    Shape("resnet-cifar 3x3 64->128 s2 b128", 128, 32, 64, 128, 3, 2, 1),
    Shape("resnet-cifar 1x1 64->128 s2 b128", 128, 32, 64, 128, 1, 2, 0),
    Shape("resnet-cifar 3x3 256 b128", 128, 8, 256, 256, 3, padding=1),
    Shape("resnet50 stem 7x7 s2 b16", 16, 224, 3, 64, 7, 2, 3, input_grad=False),
    Shape("resnet50 1x1 256->64 b16", 16, 56, 256, 64, 1),
    Shape("depthwise 3x3 64ch b64 32x32", 64, 32, 64, 64, 3, padding=1, groups=64),
    Shape("depthwise 3x3 32ch b64", 64, 56, 32, 32, 3, padding=1, groups=32),
    Shape("depthwise 3x3 144ch s2 b64", 64, 56, 144, 144, 3, 2, 1, groups=144),
    Shape("depthwise 3x3 512ch b64", 64, 14, 512, 512, 3, padding=1, groups=512),
    Shape("grouped 3x3 128ch g8 b64", 64, 28, 128, 128, 3, padding=1, groups=8),
    Shape("transposed 4x4 64->64 s2 b32", 32, 16, 64, 64, 4, 2, 1, transpose=True),
    Shape("transposed 3x3 64->32 s2 b64", 64, 16, 64, 32, 3, 2, 1, transpose=True),
    Shape("transposed 4x4 128->64 s2 b32", 32, 16, 128, 64, 4, 2, 1, transpose=True),
    # Zero padding wider than the kernel reaches (output longer than input): XLA:CPU's
    # kernel gradient of such a convolution is slow unless the input is padded beforehand.
    Shape("padded past reach 3x3 64->256 p2 b32", 32, 16, 64, 256, 3, padding=2),
)

SMOKE_SHAPES = (
    Shape("smoke conv", 2, 8, 3, 4, 3, padding=1, input_grad=False),
    Shape("smoke depthwise", 2, 8, 4, 4, 3, padding=1, groups=4),
    Shape("smoke grouped", 2, 8, 4, 4, 3, padding=1, groups=2),
    Shape("smoke transposed", 2, 4, 4, 2, 3, 2, 1, transpose=True),
)

CONTENDERS = ("lax", "chunked", "matmul", "subpixel", "taps", "per_group", "flax", "torch")
#: The formulations timed only on the shapes they are for.
_SPECIFIC = {"subpixel": lambda s: s.transpose,
             "taps": lambda s: s.groups > 1 and s.groups == s.c_in,
             "per_group": lambda s: 1 < s.groups < s.c_in}


def jax_arguments(s: Shape) -> dict[str, Any]:
  """``ops.conv`` keywords for the shape (a transposed one as an input-dilated conv)."""
  if s.transpose:
    lo = s.kernel - 1 - s.padding
    # PyTorch's output_padding = stride - 1 on the high side: output = stride * size.
    return dict(strides=1, lhs_dilation=s.stride, padding=((lo, lo + s.stride - 1),) * 2)
  return dict(strides=s.stride, padding=((s.padding, s.padding),) * 2,
              feature_group_count=s.groups)


def jax_contender(s: Shape, how: str, x_np, w_np, g_np) -> _common.Contender:
  """``ops.conv`` with one lowering, or ``flax.linen``, forward+backward under ``jax.jit``."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from cnnjax import ops

  x, w, g = jnp.asarray(x_np), jnp.asarray(w_np), jnp.asarray(g_np)
  kwargs = jax_arguments(s)
  argnums = (0, 1) if s.input_grad else (1,)
  if how == "flax":
    if s.transpose:
      module = nn.ConvTranspose(s.c_out, (s.kernel, s.kernel), strides=(s.stride, s.stride),
                                padding=kwargs["padding"], use_bias=False)
      # ConvTranspose pads the dilated input as given: the same pads as ops.conv's.
    else:
      module = nn.Conv(s.c_out, (s.kernel, s.kernel), strides=s.stride,
                       padding=kwargs["padding"], feature_group_count=s.groups, use_bias=False)

    def forward(x, w):
      return module.apply({"params": {"kernel": w}}, x)
  else:
    forward = functools.partial(ops.conv, lowering=how, **kwargs)
    forward = (lambda f: lambda x, w: f(x, w))(forward)

  def loss(x, w):
    return jnp.sum(forward(x, w) * g)

  grad = jax.jit(jax.grad(loss, argnums=argnums))
  holder: dict[str, Any] = {}

  def run(n: int):
    for _ in range(n):
      out = grad(x, w)
    holder["out"] = out
    jax.block_until_ready(out)

  c = _common.Contender(how, run, 1, setup=lambda: run(1))
  c.info["_grads"] = lambda: [np.asarray(v) for v in holder["out"]]
  return c


def torch_contender(s: Shape, x_np, w_np, g_np) -> _common.Contender:
  """``F.conv2d`` / ``F.conv_transpose2d`` forward+backward, NCHW."""
  import torch
  import torch.nn.functional as F

  x = torch.from_numpy(np.ascontiguousarray(x_np.transpose(0, 3, 1, 2)))
  x.requires_grad_(s.input_grad)
  g = torch.from_numpy(np.ascontiguousarray(g_np.transpose(0, 3, 1, 2)))
  if s.transpose:
    # HWIO of the equivalent direct conv -> (C_in, C_out, kH, kW), spatially flipped.
    w = torch.from_numpy(np.ascontiguousarray(w_np[::-1, ::-1].transpose(2, 3, 0, 1)))
  else:
    w = torch.from_numpy(np.ascontiguousarray(w_np.transpose(3, 2, 0, 1)))
  w.requires_grad_(True)
  holder: dict[str, Any] = {}

  def run(n: int):
    for _ in range(n):
      x.grad = w.grad = None
      if s.transpose:
        y = F.conv_transpose2d(x, w, stride=s.stride, padding=s.padding,
                               output_padding=s.stride - 1)
      else:
        y = F.conv2d(x, w, stride=s.stride, padding=s.padding, groups=s.groups)
      (y * g).sum().backward()
    holder["grads"] = ([x.grad] if s.input_grad else []) + [w.grad]

  def grads():
    out = []
    for t in holder["grads"]:
      a = t.numpy()
      out.append(a.transpose(0, 2, 3, 1) if a.shape == tuple(x.shape) else a)
    if s.transpose:
      out[-1] = out[-1].transpose(2, 3, 0, 1)[::-1, ::-1]
    else:
      out[-1] = out[-1].transpose(2, 3, 1, 0)
    return out

  c = _common.Contender("torch", run, 1, setup=lambda: run(1))
  c.info["_grads"] = grads
  c.info["threads"] = torch.get_num_threads()
  return c


def part_contenders(s: Shape, how: str, x_np, w_np, g_np) -> list[_common.Contender]:
  """``ops.conv`` with one lowering, split: forward, input gradient, kernel gradient.

  Each part is its own ``jax.jit`` program (a VJP with the output cotangent),
  so the parts overlap (each gradient recomputes what it needs of the
  forward pass) and add up to more than the whole step.
  """
  import jax
  import jax.numpy as jnp

  from cnnjax import ops

  x, w, g = jnp.asarray(x_np), jnp.asarray(w_np), jnp.asarray(g_np)
  kwargs = jax_arguments(s)

  def forward(x, w):
    return ops.conv(x, w, lowering=how, **kwargs)

  parts = {"forward": forward,
           "input_grad": lambda x, w: jax.vjp(lambda x: forward(x, w), x)[1](g),
           "kernel_grad": lambda x, w: jax.vjp(lambda w: forward(x, w), w)[1](g)}
  out = []
  for name, fn in parts.items():
    compiled = jax.jit(fn)

    def run(n: int, compiled=compiled):
      for _ in range(n):
        r = compiled(x, w)
      jax.block_until_ready(r)

    out.append(_common.Contender(name, run, 1, setup=functools.partial(run, 1)))
  return out


def _ms(summary: dict[str, Any]) -> float:
  """Milliseconds per step from a contender's summary (one item per step), NaN if untimed."""
  return 1e3 / summary["median"] if "median" in summary else math.nan


def operands(s: Shape, seed: int = 0):
  """Input, HWIO kernel of the equivalent direct convolution, and output cotangent."""
  import jax
  import jax.numpy as jnp

  from cnnjax import ops

  rng = np.random.default_rng(seed)
  x = rng.standard_normal((s.batch, s.size, s.size, s.c_in), dtype=np.float32)
  c_in_g = s.c_in // (1 if s.transpose else s.groups)
  w = (rng.standard_normal((s.kernel, s.kernel, c_in_g, s.c_out), dtype=np.float32)
       / np.sqrt(s.kernel * s.kernel * c_in_g)).astype(np.float32)
  out = jax.eval_shape(functools.partial(ops.conv, **jax_arguments(s)),
                       jax.ShapeDtypeStruct(x.shape, jnp.float32),
                       jax.ShapeDtypeStruct(w.shape, jnp.float32))
  g = rng.standard_normal(out.shape, dtype=np.float32)
  return x, w, g


def auto_choice(s: Shape) -> str:
  """What ``ops.choose_lowering`` picks for the shape on CPU."""
  from cnnjax import ops

  c_in_g = s.c_in // (1 if s.transpose else s.groups)
  return ops.choose_lowering((s.batch, s.size, s.size, s.c_in), (s.kernel, s.kernel, c_in_g, s.c_out),
                             backend="cpu", **jax_arguments(s))


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per contender and shape")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--only", default="", help="keep shapes whose name contains this")
  parser.add_argument("--contenders", default=",".join(CONTENDERS))
  _common.add_out_arguments(parser, "benchmarks/results/conv_ops.json",
                            "where the JSON record is written")
  parser.add_argument("--smoke", action="store_true", help="tiny shapes, gradients cross-checked")
  parser.add_argument("--allow-xla-flags", action="store_true")
  parser.add_argument("--parts", action="store_true",
                      help="also time the auto lowering's forward, input gradient and kernel "
                           "gradient, each compiled alone")
  _common.add_chunk_arguments(parser, phases=True)
  args = parser.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if not args.allow_xla_flags:
    _common.check_single_device_xla_flags()
  _common.set_chunk_sizes(parser, args)
  from cnnjax.ops import lowering as lowering_policy  # noqa: PLC0415
  shapes = SMOKE_SHAPES if args.smoke else SHAPES
  if args.smoke:
    args.seconds, args.rounds = 0.1, 1
  shapes = [s for s in shapes if args.only in s.name]
  contenders = [c for c in args.contenders.split(",") if c]
  if "torch" in contenders:
    try:
      import torch  # noqa: F401
    except ImportError:
      print("torch is not installed (pip install 'cnnjax[bench]'): torch column skipped")
      contenders.remove("torch")

  record: dict[str, Any] = {"benchmark": "conv_ops", "environment": _common.environment(),
                            "seconds": args.seconds, "rounds": args.rounds,
                            "chunk_batch": lowering_policy.CHUNK_BATCH,
                            "phase_chunk": args.phase_chunk, "results": []}
  rows, failures, part_rows = [], [], []
  for s in shapes:
    print(f"{s.name}:", flush=True)
    x, w, g = operands(s)
    group = [torch_contender(s, x, w, g) if c == "torch" else jax_contender(s, c, x, w, g)
             for c in contenders if c not in _SPECIFIC or _SPECIFIC[c](s)]
    _common.interleave(group, args.seconds, args.rounds)
    summaries = {}
    reference = None
    for c in group:
      grads_fn = c.info.pop("_grads")
      if c.error is None:
        grads = grads_fn()
        if reference is None:
          reference = grads
        else:  # Every contender computes the same gradients.
          err = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-6))
                    for a, b in zip(grads, reference))
          c.info["max_rel_diff"] = err
          if not err < 1e-3:
            failures.append(f"{s.name}/{c.name}: gradients differ by {err:.2e}")
      sm = c.summary()
      if "median" in sm:
        sm["ms"] = _ms(sm)
      summaries[c.name] = sm
    ms = {k: v.get("ms", math.nan) for k, v in summaries.items()}
    jax_best = min((ms[k], k) for k in CONTENDERS if k in ms and k != "torch")
    choice = auto_choice(s)
    entry = {"shape": dataclasses.asdict(s), "auto": choice, "contenders": summaries,
             "ms": ms, "auto_ms": ms.get(choice, math.nan)}
    if args.parts:
      split = part_contenders(s, choice, x, w, g)
      _common.interleave(split, args.seconds, args.rounds)
      entry["parts_ms"] = {c.name: _ms(c.summary()) for c in split}
      part_rows.append([s.name, choice, *(f"{entry['parts_ms'][c.name]:.2f}" for c in split),
                        f"{ms.get(choice, math.nan):.2f}"])
    record["results"].append(entry)
    fast = min(ms.values())
    loser = "" if "torch" not in ms or ms.get(choice, math.nan) <= 1.05 * ms["torch"] else "torch"
    rows.append([s.name] + [f"{ms[k]:.2f}" if k in ms and not math.isnan(ms[k]) else "—"
                            for k in CONTENDERS] +
                [choice, f"{ms.get(choice, math.nan) / fast:.2f}",
                 f"{ms['torch'] / ms.get(choice, math.nan):.2f}" if "torch" in ms else "—",
                 loser or "", jax_best[1]])
  record["environment"]["loadavg_at_end"] = os.getloadavg()
  record["failures"] = failures
  _common.write_json(args.out, record)
  print()
  print(_common.markdown_table(
      ["shape (NHWC)", *(f"{k} ms" for k in CONTENDERS), "auto picks",
       "auto / fastest", "torch / auto", "slower than", "fastest JAX"], rows))
  if part_rows:
    print("\nParts of the auto lowering, each compiled alone (they overlap: the sum exceeds the step):\n")
    print(_common.markdown_table(
        ["shape (NHWC)", "auto", "forward ms", "input grad ms", "kernel grad ms", "whole step ms"],
        part_rows))
  print(f"\nwritten {args.out}; load average {os.getloadavg()}")
  for f in failures:
    print("FAILED:", f)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
