"""Training-step throughput on CPU: cnnjax vs hand-written Flax vs PyTorch (eager, compiled).

For LeNet-5 (32x32x3) and ResNet-18-CIFAR, batch 128, Adam (lr 1e-3),
float32, random data resident in memory, the contenders are

* ``cnnjax``: the engine's own path, ``models.create`` (BatchNorm over
  ``axis_name='batch'``), ``train.create_optimizer``, ``train.create_train_state``,
  ``train.Parallel('pmap')`` on one device, ``train.train_step`` (loss, metrics,
  ``pmean`` of gradients and statistics, gradient norm), state donated;
* ``cnnjax[N host devices]`` (``--host-devices N``): the same step data-parallel
  over N host devices of this process, the batch split between them, as a
  training run with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``;
* ``cnnjax_nnx``: the same with ``config.api='nnx'``'s state: the model as a
  ``cnnjax.nnx`` module, ``nnx.Optimizer``, the same ``train.train_step``
  over an ``NNXTrainState`` (``nnx.value_and_grad``, split/merge inside the
  compiled step);
* ``flax``: the same network written directly with ``flax.linen.Conv``,
  ``BatchNorm``, ``max_pool`` and a plain ``jax.jit`` step with ``optax.adam``
  and donation, the no-overhead reference;
* ``torch``: PyTorch eager, NCHW, the same layers, initialisation scheme and
  optimizer (``torch.optim.Adam``);
* ``torch_compile``: the same module under ``torch.compile``.

Contenders are interleaved and timed for ``--seconds`` each; images/s is
reported as median (min–max) over rounds, the first call (compilation plus
one step) separately. Run it on an idle machine::

  python benchmarks/train_step.py                       # both models, batch 128, 10 s each
  python benchmarks/train_step.py --models lenet5 --batch 128,256 --lowerings auto,lax
  python benchmarks/train_step.py --models mobilenet_v2 --contenders cnnjax,torch   # no Flax twin
  python benchmarks/train_step.py --models lenet5,resnet18_cifar --contenders cnnjax,cnnjax_nnx
  python benchmarks/train_step.py --models lenet5 --contenders cnnjax,torch --host-devices 2
  python benchmarks/train_step.py --smoke               # a few steps of everything, for tests
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402

MODELS = ("lenet5", "resnet18_cifar", "mobilenet_v2")
#: Models with a hand-written ``flax.linen`` twin (``flax_model``).
FLAX_MODELS = ("lenet5", "resnet18_cifar")
CONTENDERS = ("cnnjax", "cnnjax_nnx", "flax", "torch", "torch_compile")
NUM_CLASSES = 10
LEARNING_RATE = 1e-3


def synthetic_batch(batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``(images (B, size, size, 3) float32 N(0, 1), labels (B,) int32)``, NHWC."""
  rng = np.random.default_rng(seed)
  images = rng.standard_normal((batch, size, size, 3), dtype=np.float32)
  labels = rng.integers(0, NUM_CLASSES, batch).astype(np.int32)
  return images, labels


# --- cnnjax: the engine's path ------------------------------------------------------


@contextlib.contextmanager
def keep_single_device_collectives():
  """Within the block, ``ops.collectives`` always calls ``lax.pmean``/``lax.psum``.

  Restores the library's behaviour before ``ops.collectives`` skipped an
  axis of one device, for measuring that change against it in one run: XLA
  emits an ``all-reduce`` per call even on one device, each a fusion barrier
  on CPU (26 in ResNet-18-CIFAR's step).
  """
  from jax import lax

  from cnnjax.ops import collectives

  saved = collectives.pmean, collectives.psum
  collectives.pmean = lambda x, axis_name, axis_index_groups=None, caller="": lax.pmean(
      x, axis_name, axis_index_groups=axis_index_groups)
  collectives.psum = lambda x, axis_name, axis_index_groups=None, caller="": lax.psum(
      x, axis_name, axis_index_groups=axis_index_groups)
  try:
    yield
  finally:
    collectives.pmean, collectives.psum = saved


def cnnjax_contender(model_name: str, images: np.ndarray, labels: np.ndarray,
                     lowering: str = "auto", keep_collectives: bool = False,
                     api: str = "linen", devices: int = 1) -> _common.Contender:
  """The engine's ``pmap(train_step)`` on ``devices`` host devices (one by default), with
  ``ops.default_lowering(lowering)``.

  ``keep_collectives`` traces the step under ``keep_single_device_collectives``;
  ``api='nnx'`` trains an ``NNXTrainState`` (``config.api='nnx'``). With ``devices``
  > 1 the batch is split over that many of the process's host devices
  (``--host-devices``), and at most ``Parallel.max_in_flight`` steps are queued,
  as the training loop does.
  """
  import jax

  from cnnjax import models, ops, train

  spec = models.spec(model_name)
  kwargs: dict[str, Any] = {"num_classes": NUM_CLASSES}
  if "axis_name" in spec.fields():
    kwargs["axis_name"] = train.AXIS  # As the engine builds it.
  model = models.create(model_name, **kwargs)
  tx = train.create_optimizer({"name": "adam", "learning_rate": LEARNING_RATE},
                              {"name": "constant"}, steps_per_epoch=1, num_epochs=1)
  parallel = train.Parallel("pmap", devices=jax.local_devices()[:devices])
  holder: dict[str, Any] = {}
  step = functools.partial(train.train_step, num_classes=NUM_CLASSES)

  def setup():
    keep = keep_single_device_collectives() if keep_collectives else contextlib.nullcontext()
    with ops.default_lowering(lowering), keep:
      host = jax.device_get(jax.jit(lambda: train.setup.create_state(
          model, tx, api=api, seed=0, input_shape=(1, *images.shape[1:])))())
      holder["state"] = parallel.put_state(host)
      holder["batch"] = parallel.shard_batch(
          {"image": images, "label": labels, "mask": np.ones(len(labels), bool)})
      holder["step"] = parallel.train_step(step)
      run(1)  # Traces and compiles inside the lowering context.

  def run(n: int):
    state, batch, p_step = holder["state"], holder["batch"], holder["step"]
    queued: list[Any] = []
    for _ in range(n):
      state, metrics = p_step(state, batch)
      _common.keep_in_flight(queued, metrics, parallel.max_in_flight)
    holder["state"], holder["metrics"] = state, metrics
    jax.block_until_ready(metrics)

  def final_loss() -> float:
    m = parallel.host_metrics(holder["metrics"])
    return float(m["loss_sum"]) / float(m["count"])

  tags = (([] if lowering == "auto" else [lowering])
          + (["1-device collectives kept"] if keep_collectives else [])
          + ([f"{devices} host devices"] if devices > 1 else []))
  base = "cnnjax_nnx" if api == "nnx" else "cnnjax"
  name = f"{base}[{', '.join(tags)}]" if tags else base
  c = _common.Contender(name, run, len(labels), setup=setup)
  c.info["_final_loss"] = final_loss
  return c


# --- hand-written Flax --------------------------------------------------------------


def flax_model(model_name: str):
  """LeNet-5 or ResNet-18-CIFAR in plain ``flax.linen`` (the same architecture as cnnjax's)."""
  import flax.linen as nn

  class LeNet5(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
      x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
      x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
      x = x.reshape(x.shape[0], -1)
      x = nn.relu(nn.Dense(120)(x))
      x = nn.relu(nn.Dense(84)(x))
      return nn.Dense(NUM_CLASSES)(x)

  he = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  conv = functools.partial(nn.Conv, use_bias=False, kernel_init=he)

  class BasicBlock(nn.Module):
    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x, train: bool = True):
      norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                               epsilon=1e-5)
      pad = ((1, 1), (1, 1))
      y = conv(self.features, (3, 3), (self.strides, self.strides), padding=pad)(x)
      y = nn.relu(norm()(y))
      y = norm()(conv(self.features, (3, 3), padding=pad)(y))
      if x.shape[-1] != self.features or self.strides != 1:
        x = norm()(conv(self.features, (1, 1), (self.strides, self.strides),
                        padding="VALID")(x))
      return nn.relu(y + x)

  class ResNet18Cifar(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
      x = conv(64, (3, 3), padding=((1, 1), (1, 1)))(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x))
      for i, features in enumerate((64, 128, 256, 512)):
        for j in range(2):
          x = BasicBlock(features, 2 if i > 0 and j == 0 else 1)(x, train)
      x = x.mean(axis=(1, 2))
      return nn.Dense(NUM_CLASSES)(x)

  return {"lenet5": LeNet5, "resnet18_cifar": ResNet18Cifar}[model_name]()


def flax_contender(model_name: str, images: np.ndarray, labels: np.ndarray) -> _common.Contender:
  """A plain jitted step: forward, cross-entropy, grad, ``optax.adam``; state donated."""
  import jax
  import jax.numpy as jnp
  import optax

  model = flax_model(model_name)
  tx = optax.adam(LEARNING_RATE)
  holder: dict[str, Any] = {}

  @functools.partial(jax.jit, donate_argnums=(0,))
  def step(state, x, y):
    params, batch_stats, opt_state = state

    def loss_fn(p):
      logits, updates = model.apply({"params": p, "batch_stats": batch_stats}, x,
                                    train=True, mutable=["batch_stats"])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates.get("batch_stats", {})

    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), new_stats, opt_state), loss

  def setup():
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.key(0), jnp.zeros((1, *images.shape[1:]), jnp.float32))
    params = variables["params"]
    holder["state"] = (params, variables.get("batch_stats", {}), tx.init(params))
    holder["x"], holder["y"] = jax.device_put(images), jax.device_put(labels)
    run(1)

  def run(n: int):
    state = holder["state"]
    for _ in range(n):
      state, loss = step(state, holder["x"], holder["y"])
    holder["state"], holder["loss"] = state, loss
    jax.block_until_ready(loss)

  c = _common.Contender("flax", run, len(labels), setup=setup)
  c.info["_final_loss"] = lambda: float(holder["loss"])
  return c


# --- PyTorch ------------------------------------------------------------------------


def torch_model(model_name: str):
  """The same networks in PyTorch, NCHW, with the Flax/cnnjax initialisation scheme."""
  import torch
  from torch import nn

  def lecun_(module):
    # flax's default: LeCun normal (variance 1 / fan_in) kernels, zero biases.
    for m in module.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        nn.init.trunc_normal_(m.weight, std=math.sqrt(1.0 / fan_in) / 0.87962566,
                              a=-2 * math.sqrt(1.0 / fan_in) / 0.87962566,
                              b=2 * math.sqrt(1.0 / fan_in) / 0.87962566)
        if m.bias is not None:
          nn.init.zeros_(m.bias)

  class LeNet5(nn.Module):
    def __init__(self):
      super().__init__()
      self.conv1, self.conv2 = nn.Conv2d(3, 6, 5), nn.Conv2d(6, 16, 5)
      self.fc1, self.fc2, self.head = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)
      lecun_(self)

    def forward(self, x):
      x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
      x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
      x = torch.flatten(x, 1)
      return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))

  def bn(c):
    return nn.BatchNorm2d(c, momentum=0.1, eps=1e-5)  # torch momentum 0.1 = flax 0.9.

  class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.bn1 = bn(c_out)
      self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      self.bn2 = bn(c_out)
      self.shortcut = None
      if stride != 1 or c_in != c_out:
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), bn(c_out))

    def forward(self, x):
      y = torch.relu(self.bn1(self.conv1(x)))
      y = self.bn2(self.conv2(y))
      return torch.relu(y + (x if self.shortcut is None else self.shortcut(x)))

  class ResNet18Cifar(nn.Module):
    def __init__(self):
      super().__init__()
      self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), bn(64), nn.ReLU())
      blocks, c_in = [], 64
      for i, c in enumerate((64, 128, 256, 512)):
        for j in range(2):
          blocks.append(BasicBlock(c_in, c, 2 if i > 0 and j == 0 else 1))
          c_in = c
      self.blocks = nn.Sequential(*blocks)
      self.head = nn.Linear(512, NUM_CLASSES)
      lecun_(self.head)
      for m in self.modules():
        if isinstance(m, nn.Conv2d):  # He normal, fan-out, as cnnjax's ResNet.
          nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
      return self.head(torch.mean(self.blocks(self.stem(x)), dim=(2, 3)))

  class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, expand, stride):
      super().__init__()
      hidden = round(c_in * expand)
      layers = [] if expand == 1 else [nn.Conv2d(c_in, hidden, 1, bias=False), bn(hidden), nn.ReLU6()]
      layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), bn(hidden),
                 nn.ReLU6(), nn.Conv2d(hidden, c_out, 1, bias=False), bn(c_out)]
      self.body = nn.Sequential(*layers)
      self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
      y = self.body(x)
      return x + y if self.residual else y

  class MobileNetV2(nn.Module):
    # cnnjax's mobilenet_v2 at width 1 on 32x32 images: stem 3x3/2 to 32, the paper's 17
    # inverted residual blocks, 1x1 to 1280, pool, dropout 0.2, head.
    def __init__(self):
      super().__init__()
      from cnnjax.models.mobilenet import MOBILENET_V2_CONFIG
      blocks, c_in = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), bn(32), nn.ReLU6()], 32
      for t, c, n, stride in MOBILENET_V2_CONFIG:
        for i in range(n):
          blocks.append(InvertedResidual(c_in, c, t, stride if i == 0 else 1))
          c_in = c
      blocks += [nn.Conv2d(c_in, 1280, 1, bias=False), bn(1280), nn.ReLU6()]
      self.features = nn.Sequential(*blocks)
      self.dropout = nn.Dropout(0.2)
      self.head = nn.Linear(1280, NUM_CLASSES)
      lecun_(self.head)
      for m in self.modules():
        if isinstance(m, nn.Conv2d):  # He normal, fan-out, as cnnjax's.
          nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
      return self.head(self.dropout(torch.mean(self.features(x), dim=(2, 3))))

  return {"lenet5": LeNet5, "resnet18_cifar": ResNet18Cifar, "mobilenet_v2": MobileNetV2}[model_name]()


def torch_contender(model_name: str, images: np.ndarray, labels: np.ndarray,
                    compiled: bool) -> _common.Contender:
  """PyTorch eager (or ``torch.compile``-d module): zero_grad, forward, loss, backward, Adam."""
  import torch

  torch.manual_seed(0)
  model = torch_model(model_name).train()
  module = torch.compile(model) if compiled else model
  opt = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))  # NCHW.
  y = torch.from_numpy(labels.astype(np.int64))
  holder: dict[str, Any] = {}

  def run(n: int):
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(module(x), y)
      loss.backward()
      opt.step()
    holder["loss"] = loss.detach()

  c = _common.Contender("torch_compile" if compiled else "torch", run, len(labels),
                        setup=lambda: run(1))
  c.info["_final_loss"] = lambda: float(holder["loss"])
  c.info["threads"] = torch.get_num_threads()
  return c


# --- main ---------------------------------------------------------------------------


def build(contender: str, model_name: str, images, labels, lowerings,
          keep: bool = False, host_devices: int = 1) -> list[_common.Contender]:
  if contender == "cnnjax":
    out = [cnnjax_contender(model_name, images, labels, low) for low in lowerings]
    if keep:
      out.append(cnnjax_contender(model_name, images, labels, lowerings[0], keep_collectives=True))
    if host_devices > 1:
      out.append(cnnjax_contender(model_name, images, labels, lowerings[0], devices=host_devices))
    return out
  if contender == "cnnjax_nnx":
    return [cnnjax_contender(model_name, images, labels, lowerings[0], api="nnx")]
  if contender == "flax":
    return [flax_contender(model_name, images, labels)] if model_name in FLAX_MODELS else []
  return [torch_contender(model_name, images, labels, compiled=contender == "torch_compile")]


def ratio(a: dict, b: dict | None) -> float:
  if b is None or "median" not in a or "median" not in b:
    return math.nan
  return a["median"] / b["median"]


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--batch", default="128", help="batch size(s), comma separated")
  parser.add_argument("--contenders", default=",".join(CONTENDERS))
  parser.add_argument("--lowerings", default="auto",
                      help="cnnjax conv lowerings to time, e.g. 'auto,lax' (ops.default_lowering)")
  parser.add_argument("--keep-collectives", action="store_true",
                      help="also time cnnjax with the 1-device collectives kept (the behaviour "
                           "before ops.collectives skipped them)")
  parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per contender")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
  parser.add_argument("--image-size", type=int, default=32)
  _common.add_chunk_arguments(parser)
  _common.add_out_arguments(parser, "benchmarks/results/train_step.json",
                            "where the JSON record is written")
  parser.add_argument("--smoke", action="store_true",
                      help="batch 8, a few steps, finite-loss checks (correctness only)")
  parser.add_argument("--allow-xla-flags", action="store_true")
  parser.add_argument("--host-devices", type=int, default=1,
                      help="also time cnnjax data-parallel over this many host devices "
                           "(--xla_force_host_platform_device_count, set by this script), "
                           "next to the one-device step")
  args = parser.parse_args(argv)
  _common.check_out(args.out, args.overwrite)
  if not args.allow_xla_flags:
    _common.check_single_device_xla_flags()
  if args.host_devices < 1:
    parser.error(f"--host-devices must be >= 1, got {args.host_devices}")
  if args.host_devices > 1:
    if "jax" in sys.modules or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
      parser.error("--host-devices sets XLA_FLAGS' host device count itself, before jax is "
                   f"imported; XLA_FLAGS is {os.environ.get('XLA_FLAGS', '')!r}")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={args.host_devices}").strip()
  if args.smoke:
    args.batch, args.seconds, args.rounds = "8", 0.2, 2
  _common.set_chunk_sizes(parser, args)
  from cnnjax.ops import lowering as lowering_policy  # noqa: PLC0415
  contenders = [c for c in args.contenders.split(",") if c]
  unknown = sorted(set(contenders) - set(CONTENDERS))
  if unknown:
    parser.error(f"unknown contenders {unknown}; expected some of {list(CONTENDERS)}")
  models_ = [m for m in args.models.split(",") if m]
  if set(models_) - set(MODELS):
    parser.error(f"unknown models {sorted(set(models_) - set(MODELS))}; expected some of {list(MODELS)}")
  lowerings = [v for v in args.lowerings.split(",") if v]
  if any(c.startswith("torch") for c in contenders):
    try:
      import torch  # noqa: F401
    except ImportError:
      print("torch is not installed (pip install 'cnnjax[bench]'): PyTorch contenders skipped")
      contenders = [c for c in contenders if not c.startswith("torch")]

  record: dict[str, Any] = {"benchmark": "train_step", "environment": _common.environment(),
                            "seconds": args.seconds, "rounds": args.rounds,
                            "smoke": args.smoke, "chunk_batch": lowering_policy.CHUNK_BATCH,
                            "host_devices": args.host_devices, "results": []}
  rows = []
  for batch in (int(b) for b in args.batch.split(",")):
    for model_name in models_:
      print(f"{model_name}, batch {batch}:", flush=True)
      images, labels = synthetic_batch(batch, args.image_size)
      group = [c for name in contenders for c in build(name, model_name, images, labels, lowerings,
                                                   args.keep_collectives, args.host_devices)]
      _common.interleave(group, args.seconds, args.rounds)
      summaries = {}
      for c in group:
        loss_fn = c.info.pop("_final_loss")
        if c.error is None:
          c.info["final_loss"] = loss_fn()
          if not math.isfinite(c.info["final_loss"]):
            c.error = f"non-finite loss {c.info['final_loss']}"
        s = c.summary()
        s["first_call_s"] = s.pop("setup_s")
        summaries[c.name] = s
      base = summaries.get("cnnjax")
      entry = {"model": model_name, "batch": batch, "contenders": summaries}
      if base is not None:
        entry["ratios"] = {f"cnnjax/{k}": ratio(base, v) for k, v in summaries.items() if k != "cnnjax"}
        if "cnnjax_nnx" in summaries:  # The NNX step's images/s as a fraction of the linen step's.
          entry["ratios"]["cnnjax_nnx/cnnjax"] = ratio(summaries["cnnjax_nnx"], base)
      record["results"].append(entry)
      for name, s in summaries.items():
        r = entry.get("ratios", {}).get(f"cnnjax/{name}", math.nan)
        rows.append([model_name, batch, name, _common.fmt_rate(s),
                     f"{s.get('step_ms', math.nan):.1f}", f"{s['first_call_s']:.1f}",
                     f"{s.get('own_cores', math.nan):.2f}",
                     "—" if math.isnan(r) else f"{r:.2f}"])
  record["environment"]["loadavg_at_end"] = os.getloadavg()
  _common.write_json(args.out, record)
  print()
  print(_common.markdown_table(
      ["model", "batch", "contender", "images/s median (min–max)", "step ms",
       "first call s", "cores used", "cnnjax / this"], rows))
  print(f"\nwritten {args.out}; load average {os.getloadavg()}")
  errors = [(e["model"], n, s["error"]) for e in record["results"]
            for n, s in e["contenders"].items() if s.get("error")]
  if args.smoke and errors:
    print(f"errors: {errors}")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
