"""ResNet-50 training throughput and MFU on an accelerator (runs on CPU at tiny size with --smoke).

The engine's path: ``models.create('resnet50', dtype=bfloat16,
axis_name='batch')``, SGD with momentum from ``train.create_optimizer``,
``train.Parallel('pmap')`` over the local devices, ``train.train_step`` with
the state donated, on synthetic 224x224x3 images resident on the devices.
For each ``--batch`` (global) it reports images/s, step time, compile time
and the model FLOPs utilisation

  MFU = images/s x 3 x forward FLOPs per image / peak dense bf16 FLOP/s,

where forward FLOPs = 2 x MACs counted by ``cnnjax.inspect.count_macs``
(every convolution and dense layer), cross-checked against XLA's cost
analysis of the compiled forward pass, and the peak is looked up from the
device kind (``PEAK_BF16``; ``--peak-tflops`` overrides it). The factor 3
counts the backward pass as twice the forward.

  python benchmarks/gpu_resnet50.py                      # batch 256
  python benchmarks/gpu_resnet50.py --batch 64,128,256,512
  python benchmarks/gpu_resnet50.py --smoke              # CPU: batch 2, 32x32, float32, 2 steps

``--smoke`` checks the path, not the number: it runs ResNet-50's widths with
one bottleneck block per stage (``--stage-sizes 1,1,1,1``), which compiles in
a fraction of the full network's time on CPU.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

#: Peak dense bf16 FLOP/s by a substring of ``jax.Device.device_kind`` (without sparsity).
PEAK_BF16 = (
    ("H200", 989e12),
    ("H100", 989e12),  # SXM; the PCIe H100 is 756e12, pass --peak-tflops 756.
    ("A100", 312e12),
    ("L4", 121e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v4", 275e12),
)


def peak_flops(device_kind: str) -> float:
  """Peak dense bf16 FLOP/s of a device kind, or NaN when unknown (e.g. CPU)."""
  for key, value in PEAK_BF16:
    if key.lower() in device_kind.lower():
      return value
  return math.nan


def forward_flops(model, image_size: int, dtype) -> tuple[float, float]:
  """``(2 x count_macs, XLA cost-analysis flops)`` of one image's forward pass (eval mode)."""
  import jax
  import jax.numpy as jnp

  # The module, not the ``summary`` function ``cnnjax.inspect`` re-exports under that name.
  summary = importlib.import_module("cnnjax.inspect.summary")

  shape = (1, image_size, image_size, 3)
  analytic = 2.0 * summary.count_macs(model, shape, dtype=jnp.float32, train=False)
  variables = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                             jax.ShapeDtypeStruct(shape, jnp.float32))
  forward = jax.jit(functools.partial(model.apply, train=False))
  try:
    cost = forward.lower(variables, jax.ShapeDtypeStruct(shape, dtype)).compile().cost_analysis()
    if isinstance(cost, list):
      cost = cost[0]
    xla = float(cost.get("flops", math.nan))
  except Exception:  # noqa: BLE001 - cost analysis is optional on some backends.
    xla = math.nan
  return analytic, xla


def measure(batch: int, image_size: int, dtype, steps: int, warmup: int,
            stage_sizes: tuple[int, ...] = (3, 4, 6, 3)) -> dict[str, Any]:
  """Images/s, step time and compile time of the engine's train step at one global batch."""
  import jax

  from cnnjax import models, train

  model = models.create("resnet50", num_classes=1000, dtype=dtype, axis_name=train.AXIS,
                        stage_sizes=stage_sizes)
  tx = train.create_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
                              {"name": "constant"}, steps_per_epoch=1, num_epochs=1)
  parallel = train.Parallel("pmap")
  parallel.check_batch_size(batch, "--batch")
  host = jax.device_get(train.create_train_state(
      model, tx, seed=0, input_shape=(1, image_size, image_size, 3)))
  state = parallel.put_state(host)
  rng = np.random.default_rng(0)
  data = parallel.shard_batch({
      "image": rng.standard_normal((batch, image_size, image_size, 3), dtype=np.float32),
      "label": rng.integers(0, 1000, batch).astype(np.int32),
      "mask": np.ones(batch, bool)})
  p_step = parallel.train_step(functools.partial(train.train_step, num_classes=1000))

  t0 = time.perf_counter()
  compiled = p_step.lower(state, data).compile()
  compile_s = time.perf_counter() - t0
  for _ in range(warmup):
    state, metrics = compiled(state, data)
  jax.block_until_ready(metrics)
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = compiled(state, data)
  jax.block_until_ready(metrics)
  wall = time.perf_counter() - t0
  loss = float(parallel.host_metrics(metrics)["loss_sum"]) / batch
  return {"batch": batch, "images_per_s": steps * batch / wall, "step_ms": 1e3 * wall / steps,
          "compile_s": compile_s, "final_loss": loss}


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", default="256", help="global batch size(s), comma separated")
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--peak-tflops", type=float, default=None,
                      help="peak dense FLOP/s of the device in TFLOP/s (default: table lookup)")
  _common.add_out_arguments(parser, "benchmarks/results/gpu_resnet50.json",
                            "where the JSON record is written")
  parser.add_argument("--stage-sizes", default="3,4,6,3",
                      help="bottleneck blocks per stage, comma separated (ResNet-50's by default)")
  parser.add_argument("--smoke", action="store_true",
                      help="batch 2, 32x32, float32, 2 steps, one block per stage: checks the "
                           "path runs (CPU)")
  args = parser.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if args.smoke:
    args.batch, args.image_size, args.dtype, args.steps, args.warmup = "2", 32, "float32", 2, 1
    args.stage_sizes = "1,1,1,1"
  stage_sizes = tuple(int(n) for n in args.stage_sizes.split(","))

  import jax
  import jax.numpy as jnp

  from cnnjax import models

  dtype = jnp.dtype(args.dtype)
  device = jax.devices()[0]
  kind = device.device_kind
  devices = jax.local_device_count()
  peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(kind)
  flops, xla_flops = forward_flops(
      models.create("resnet50", num_classes=1000, dtype=dtype, stage_sizes=stage_sizes),
      args.image_size, dtype)
  print(f"{kind} x{devices} ({jax.default_backend()}), peak {peak / 1e12:.0f} TFLOP/s per device; "
        f"forward {flops / 1e9:.2f} GFLOP/image (XLA cost analysis {xla_flops / 1e9:.2f})")
  record: dict[str, Any] = {
      "benchmark": "gpu_resnet50", "environment": _common.environment(),
      "device_kind": kind, "devices": devices, "backend": jax.default_backend(),
      "dtype": args.dtype, "image_size": args.image_size, "peak_flops_per_device": peak,
      "stage_sizes": list(stage_sizes),
      "forward_flops_per_image": flops, "xla_forward_flops_per_image": xla_flops,
      "results": []}
  rows = []
  for batch in (int(b) for b in args.batch.split(",")):
    r = measure(batch, args.image_size, dtype, args.steps, args.warmup, stage_sizes)
    achieved = r["images_per_s"] * 3 * flops
    r["mfu"] = achieved / (peak * devices)
    r["mfu_xla_flops"] = r["images_per_s"] * 3 * xla_flops / (peak * devices)
    record["results"].append(r)
    rows.append([batch, f"{r['images_per_s']:,.1f}", f"{r['step_ms']:.1f}",
                 f"{r['compile_s']:.1f}", f"{achieved / 1e12:.1f}",
                 "—" if math.isnan(r["mfu"]) else f"{100 * r['mfu']:.1f}%",
                 "—" if math.isnan(r["mfu_xla_flops"]) else f"{100 * r['mfu_xla_flops']:.1f}%"])
    if not math.isfinite(r["final_loss"]):
      print(f"non-finite loss at batch {batch}: {r['final_loss']}")
      return 1
  _common.write_json(args.out, record)
  print(_common.markdown_table(
      ["batch", "images/s", "step ms", "compile s", "model TFLOP/s", "MFU", "MFU (XLA flops)"],
      rows))
  print(f"\nwritten {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
