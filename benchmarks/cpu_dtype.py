"""bfloat16 against float32 compute on CPU: the engine's training step, images/s.

XLA:CPU has no fast bfloat16 convolution: it converts and runs a slower path,
so ``model.dtype=bfloat16`` (right on GPU and TPU) costs throughput on CPU.
This measures by how much, for the default model (``digits_cnn``, 8x8x1) and
``lenet5`` (28x28x1): the engine's ``pmap(train_step)`` on one CPU device,
both dtypes timed in interleaved rounds (``_common.interleave``). The training
engine's warning for ``model.dtype=bfloat16`` on CPU quotes this ratio. Run on
an idle machine::

  python benchmarks/cpu_dtype.py
  python benchmarks/cpu_dtype.py --models digits_cnn --seconds 6 --rounds 3
  python benchmarks/cpu_dtype.py --smoke
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

SHAPES = {"digits_cnn": (8, 8, 1), "lenet5": (28, 28, 1)}


def contender(model_name: str, dtype: str, batch: int) -> _common.Contender:
  """The engine's ``pmap(train_step)`` for ``model_name`` computing in ``dtype``."""
  import jax
  import jax.numpy as jnp

  from cnnjax import models, train

  rng = np.random.default_rng(0)
  images = rng.standard_normal((batch, *SHAPES[model_name]), dtype=np.float32)
  labels = rng.integers(0, 10, batch).astype(np.int32)
  kwargs: dict[str, Any] = {"num_classes": 10, "dtype": jnp.dtype(dtype)}
  if "axis_name" in models.spec(model_name).fields():
    kwargs["axis_name"] = train.AXIS
  model = models.create(model_name, **kwargs)
  tx = train.create_optimizer({"name": "sgd", "learning_rate": 0.01, "momentum": 0.9},
                              {"name": "constant"}, steps_per_epoch=1, num_epochs=1)
  parallel = train.Parallel("pmap", jax.local_devices()[:1])
  holder: dict[str, Any] = {}

  def setup():
    host = jax.device_get(train.create_train_state(
        model, tx, seed=0, input_shape=(1, *images.shape[1:])))
    holder["state"] = parallel.put_state(host)
    holder["batch"] = parallel.shard_batch(
        {"image": images, "label": labels, "mask": np.ones(batch, bool)})
    holder["step"] = parallel.train_step(functools.partial(train.train_step, num_classes=10))
    run(1)

  def run(n: int):
    state = holder["state"]
    for _ in range(n):
      state, metrics = holder["step"](state, holder["batch"])
    holder["state"] = state
    jax.block_until_ready(metrics)

  return _common.Contender(f"{model_name} {dtype}", run, batch, setup=setup)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default=",".join(SHAPES))
  parser.add_argument("--batch", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per contender")
  parser.add_argument("--rounds", type=int, default=5)
  _common.add_out_arguments(parser, None, "also write the record as JSON here")
  parser.add_argument("--smoke", action="store_true",
                      help="digits_cnn, batch 8, one short round: correctness only, no timings")
  args = parser.parse_args()
  _common.check_out(args.out, args.overwrite)
  if args.smoke:
    args.models, args.batch, args.seconds, args.rounds = "digits_cnn", 8, 0.1, 1
  rows, record = [], {"environment": _common.environment(), "batch": args.batch, "results": []}
  for name in args.models.split(","):
    pair = [contender(name, dtype, args.batch) for dtype in ("float32", "bfloat16")]
    _common.interleave(pair, args.seconds, args.rounds)
    f32, bf16 = (c.summary() for c in pair)
    ratio = bf16["median"] / f32["median"]
    rows.append([name, args.batch, f"{f32['median']:,.0f}", f"{bf16['median']:,.0f}",
                 f"{ratio:.2f}"])
    record["results"].append({"model": name, "float32": f32, "bfloat16": bf16,
                              "bfloat16/float32": ratio})
  print(_common.markdown_table(
      ["model", "batch", "float32 img/s", "bfloat16 img/s", "bfloat16 / float32"], rows))
  if args.out:
    _common.write_json(args.out, record)


if __name__ == "__main__":
  main()
