"""The three strategies of ``cnnjax.train.Parallel`` side by side: pmap, shard_map, jit.

Two measurements, every contender interleaved with its peers in one run
(``_common.interleave``):

* **host overhead**: a tiny model (one 3x3 conv with 4 channels, BatchNorm,
  a dense head) on ``(8, 8, 1)`` images, 8 per device, where the step's
  arithmetic is negligible and the time is the dispatch of one step: µs/step
  of the step alone (batch already on the devices) and of ``shard_batch`` +
  step (what the loop pays per step), on 1 device and on ``--devices``
  devices;
* **throughput**: images/s of LeNet-5 (32x32x3) and ResNet-18-CIFAR, batch
  128, SGD with momentum, on one device, the engine's ``train_step`` under
  each strategy.

Several devices on CPU are XLA's fake host devices
(``--xla_force_host_platform_device_count``), which share the same cores: the
multi-device rows measure what each strategy costs per step on the host, not
a speed-up. Commands::

  python benchmarks/strategies.py                      # both parts, 4 fake devices, 10 s each
  python benchmarks/strategies.py --parts overhead --seconds 5
  python benchmarks/strategies.py --smoke              # a few steps of everything, for tests
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402  (jax-free: imported before the device count is set)


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--parts", default="overhead,throughput", help="overhead, throughput or both")
  p.add_argument("--strategies", default="pmap,shard_map,jit")
  p.add_argument("--devices", type=int, default=4, help="fake CPU devices for the overhead part")
  p.add_argument("--models", default="lenet5,resnet18_cifar")
  p.add_argument("--batch", type=int, default=128, help="throughput batch size")
  p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per contender")
  p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
  p.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
  _common.add_out_arguments(p, "benchmarks/results/strategies.json",
                            "where the JSON record is written")
  args = p.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if args.smoke:
    args.seconds, args.rounds, args.batch, args.devices = 0.2, 1, 8, 2
    args.models = "lenet5"
  return args


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
  # Fake devices must be requested before jax is imported.
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

NUM_CLASSES = 10


def _tiny_model(axis_name):
  import flax.linen as nn  # noqa: PLC0415

  from cnnjax.layers import BatchNorm  # noqa: PLC0415

  class Tiny(nn.Module):
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train: bool):
      x = BatchNorm(axis_name=self.axis_name, momentum=0.9)(nn.Conv(4, (3, 3))(x), train=train)
      return nn.Dense(NUM_CLASSES)(nn.relu(x).mean(axis=(1, 2)))

  return Tiny(axis_name=axis_name)


def _batch(n: int, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(0)
  return {"image": rng.standard_normal((n, *shape), dtype=np.float32),
          "label": rng.integers(0, NUM_CLASSES, n).astype(np.int32),
          "mask": np.ones(n, bool)}


def contender(name: str, strategy: str, devices: list, model_fn, batch: dict[str, np.ndarray],
              *, with_input: bool, shared: dict | None = None) -> _common.Contender:
  """``run(n)``: ``n`` engine steps under ``strategy`` on ``devices`` (state donated).

  Contenders given the same ``shared`` dict with the same strategy, devices and
  ``model_fn`` share one initial state (a host copy; each puts its own on the
  devices) and one compiled step: the step alone and ``shard_batch`` + step
  time the same program.
  """
  from cnnjax.train import Parallel, create_train_state, train_step  # noqa: PLC0415

  parallel = Parallel(strategy, devices)
  holder: dict[str, Any] = {}
  shared = {} if shared is None else shared
  key = (strategy, len(devices), model_fn, batch["image"].shape)

  def setup():
    if key not in shared:
      model = model_fn(parallel.axis_name)
      tx = optax.sgd(0.01, momentum=0.9)
      state = create_train_state(model, tx, seed=0, input_shape=(1, *batch["image"].shape[1:]))
      step = parallel.train_step(functools.partial(
          train_step, num_classes=NUM_CLASSES, axis_name=parallel.axis_name))
      shared[key] = (step, jax.device_get(state))
    holder["step"], host_state = shared[key]
    holder["state"] = parallel.put_state(host_state)
    holder["batch"] = parallel.shard_batch(batch)

  def run(n: int):
    state, step = holder["state"], holder["step"]
    queued = []
    for _ in range(n):
      placed = parallel.shard_batch(batch) if with_input else holder["batch"]
      state, metrics = step(state, placed)
      _common.keep_in_flight(queued, metrics, parallel.max_in_flight)
    jax.block_until_ready((state, metrics))
    holder["state"] = state

  images = batch["image"].shape[0]
  return _common.Contender(name, run, images, setup=setup,
                           info={"strategy": strategy, "devices": len(devices)})


def overhead(args) -> list[list[Any]]:
  """µs/step of the tiny model, step alone and with ``shard_batch``, per strategy and device count."""
  rows = []
  for n in sorted({1, args.devices}):
    devices = jax.local_devices()[:n]
    batch = _batch(8 * n, (8, 8, 1))
    shared: dict = {}
    group = [contender(f"{s}{'+input' if inp else ''} x{n}", s, devices, _tiny_model, batch,
                       with_input=inp, shared=shared)
             for inp in (False, True) for s in args.strategies.split(",")]
    print(f"tiny model, {n} device(s), batch {8 * n}:", flush=True)
    _common.interleave(group, args.seconds, args.rounds)
    for c in group:
      s = c.summary()
      us = 1e3 * s["step_ms"] if "step_ms" in s else float("nan")
      rows.append([n, c.info["strategy"], "shard_batch + step" if "+input" in c.name else "step",
                   f"{us:,.0f}", s.get("clean_rounds", 0), s.get("rounds", 0)])
  return rows


def throughput(args) -> list[list[Any]]:
  """images/s of each model under each strategy on one device."""
  from cnnjax import models  # noqa: PLC0415

  rows = []
  for name in args.models.split(","):
    spec = models.spec(name)
    batch = _batch(args.batch, spec.input_shape)
    has_axis = "axis_name" in spec.fields()

    def model_fn(axis, name=name, has_axis=has_axis):
      kwargs = {"axis_name": axis} if has_axis else {}
      return models.create(name, num_classes=NUM_CLASSES, **kwargs)

    group = [contender(f"{name} {s}", s, jax.local_devices()[:1], model_fn, batch,
                       with_input=True) for s in args.strategies.split(",")]
    print(f"{name}, batch {args.batch}, one device:", flush=True)
    _common.interleave(group, args.seconds, args.rounds)
    base = group[0].summary()
    for c in group:
      s = c.summary()
      ratio = s["median"] / base["median"] if "median" in s and "median" in base else float("nan")
      rows.append([name, c.info["strategy"], _common.fmt_rate(s),
                   f"{s.get('step_ms', float('nan')):.1f}", f"{ratio:.2f}"])
  return rows


def main(args) -> dict[str, Any]:
  record: dict[str, Any] = {"benchmark": "strategies", "environment": _common.environment(),
                            "args": vars(args)}
  parts = args.parts.split(",")
  if "overhead" in parts:
    rows = overhead(args)
    record["overhead"] = rows
    print()
    print(_common.markdown_table(
        ["devices", "strategy", "timed", "µs/step (median)", "clean rounds", "rounds"], rows))
  if "throughput" in parts:
    rows = throughput(args)
    record["throughput"] = rows
    print()
    print(_common.markdown_table(
        ["model", "strategy", "images/s median (min–max)", "step ms",
         f"vs {args.strategies.split(',')[0]}"], rows))
  record["environment"]["loadavg_at_end"] = os.getloadavg()
  _common.write_json(args.out, record)
  print(f"\nwritten {args.out}; load average {os.getloadavg()}")
  return record


if __name__ == "__main__":
  main(ARGS)
