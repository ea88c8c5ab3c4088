"""The configuration schema of a training run, and its checks.

Every experiment config (``experiments/configs/*.py``) starts from
``base_config()``, which defines every field with a default and a one-line
comment, sets what it changes, and locks the result, so that a misspelt
override (``--config.optimizer.learning_rte=0.1``) is an error. The errors here
name the nearest valid key (``difflib``) and say what to do.

``validate(config)`` checks names and values before anything is compiled;
``train_and_evaluate`` calls it first.

Model fields: ``model.kwargs`` takes any field of the chosen model that
``cnnjax.models.create`` accepts (``width``, ``num_filters``, ``downsample``,
``padding``, ``dropout_rate`` ...). ``model_fields(name)`` lists them with
their types and defaults; ``apply_model_overrides`` sets them from
``--config.model.kwargs.FIELD=VALUE`` arguments, checking the name (with the
nearest field on a typo) and the type; ``describe(config)`` is what
``experiments/train.py --config.help`` prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

from cnnjax.train.model_fields import (  # noqa: F401  (the config's public names)
    ENGINE_FIELDS,
    ModelField,
    apply_model_overrides,
    check_model_kwargs,
    model_fields,
    parse_model_field,
    split_model_overrides,
)
from cnnjax.train.optim import OPTIMIZERS, SCHEDULES

DTYPES = ("float32", "bfloat16", "float16")

log = logging.getLogger(__name__)
_WARNED: set[tuple[str, str]] = set()

#: Why ``model.dtype`` other than float32 is slow on CPU, with the measured ratio.
CPU_DTYPE_ADVICE = (
    "model.dtype={dtype} on CPU: XLA:CPU has no fast {dtype} convolution and runs a slower "
    "path than float32 (benchmarks/cpu_dtype.py: {ratio} the float32 images/s of the "
    "training step), and float32 parameters gain nothing from it on CPU. Use "
    "--config.model.dtype=float32 on CPU; {dtype} pays off on GPU and TPU.")
#: bfloat16/float32 images/s of the training step on CPU, from benchmarks/cpu_dtype.py
#: (benchmarks/results/cpu_dtype.json: 2 cores shared with other work, every round
#: marked contaminated; the ratio, measured in one run, is what carries over).
CPU_BF16_RATIO = "0.74x for digits_cnn and 0.93x for lenet5"


def base_config() -> ml_collections.ConfigDict:
  """Every field of a run, with its default; unlocked so experiments can set them."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Seeds initialisation, dropout, augmentation and data order.

  c.model = ml_collections.ConfigDict()
  c.model.name = "digits_cnn"  # A name from cnnjax.models.names().
  c.model.dtype = "float32"  # Compute dtype: float32, bfloat16 or float16 (params stay float32).
  c.model.kwargs = ml_collections.ConfigDict()  # Extra model fields, e.g. {'padding': 'SAME'}.

  c.data = ml_collections.ConfigDict()
  c.data.name = "digits"  # Data set name (cnnjax.data), e.g. 'digits', 'mnist', 'cifar10'.
  c.data.data_dir = config_dict.placeholder(str)  # TFDS data directory (None: TFDS default).
  c.data.pipeline = "memory"  # 'memory' (arrays in RAM) or 'grain' (streaming).
  c.data.train_split = "train"  # Split to train on.
  c.data.eval_split = "test"  # Split evaluated after every epoch (validation metrics).
  c.data.test_split = "test"  # Split evaluated at the end (test_loss/test_accuracy).
  c.data.train_subset = config_dict.placeholder(int)  # Train on the first N examples only.
  c.data.worker_count = 0  # Grain worker processes (0: in-process).
  c.data.image_size = 0  # Resize images to this square size (0: as stored; required for variable-size sets like imagenet2012).
  c.data.crop_scale = (0.08, 1.0)  # Variable-size sets: training images are random-resized crops of this area fraction (evaluation: centre crop).

  c.task = "classification"  # What is learnt: 'classification', 'regression' or 'segmentation' (cnnjax.train.tasks).
  c.regression_loss = "mse"  # Regression loss: 'mse' or 'huber'.
  c.huber_delta = 1.0  # Huber loss threshold, in standardised target units.
  c.target_mean = 0.0  # Regression: targets are standardised as (y - target_mean) / target_std.
  c.target_std = 1.0  # Regression: the standardisation's scale (> 0).
  c.ignore_label = 255  # Segmentation: pixels with this label count in no loss or metric.

  c.augment = ""  # On-device augmentation spec for cnnjax.data.augment.build ('' for none).
  c.mixup_alpha = 0.0  # Mixup Beta parameter; 0 disables mixup.
  c.cutmix_alpha = 0.0  # CutMix Beta parameter; 0 disables CutMix.
  c.label_smoothing = 0.0  # Label smoothing factor in [0, 1).

  c.batch_size = 128  # Global training batch size (all devices of all processes).
  c.eval_batch_size = 256  # Global evaluation batch size.
  c.num_epochs = 10.0  # Length of training in epochs.
  c.num_train_steps = -1  # If > 0, stop after this many steps (overrides num_epochs).

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # One of: sgd, adam, adamw.
  c.optimizer.learning_rate = 0.1  # Peak learning rate.
  c.optimizer.momentum = 0.9  # SGD momentum (0 for plain SGD).
  c.optimizer.nesterov = False  # SGD with Nesterov momentum.
  c.optimizer.b1 = 0.9  # Adam beta1.
  c.optimizer.b2 = 0.999  # Adam beta2.
  c.optimizer.eps = 1e-8  # Adam epsilon.
  c.optimizer.weight_decay = 0.0  # Weight decay of rank>1 kernels (L2 for sgd/adam, decoupled for adamw).
  c.optimizer.grad_clip_norm = 0.0  # Clip gradients to this global norm; 0 disables clipping.

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "cosine"  # One of: constant, cosine, piecewise.
  c.schedule.warmup_epochs = 0.0  # Linear warm-up from 0, in epochs.
  c.schedule.boundaries_epochs = (30.0, 60.0, 80.0)  # Piecewise: epochs where the rate is multiplied.
  c.schedule.decay_factor = 0.1  # Piecewise: the multiplier at each boundary.

  c.strategy = "pmap"  # 'pmap', 'shard_map' or 'jit' over all devices (README: Parallelism).
  c.api = "linen"  # The model's Flax API: 'linen' (TrainState) or 'nnx' (cnnjax.nnx model, nnx.Optimizer).
  c.skip_nonfinite = False  # Skip updates whose loss/gradient is NaN/Inf instead of stopping.

  c.log_every_steps = 50  # Fetch metrics to the host, log and update the bar every N steps.
  c.eval_every_epochs = 1  # Evaluate on data.eval_split every N epochs.
  c.checkpoint_every_steps = 0  # Save every N steps (0: only at epoch ends and the end).
  c.checkpoint_every_epochs = 1  # Save at the end of every N-th epoch (0: not at epoch ends).
  c.max_to_keep = 3  # Checkpoints to keep.
  c.async_checkpointing = True  # Write checkpoints in a background thread.
  c.progress_bar = True  # Show a tqdm bar (process 0 only).
  c.plots = True  # Write plots/*.png at the end.
  c.tensorboard = False  # Also write TensorBoard events (needs the tensorboardX package).
  # Persistent XLA cache ('' disables it). Default: $CNNJAX_COMPILATION_CACHE if set ('' too).
  c.compilation_cache_dir = os.environ.get("CNNJAX_COMPILATION_CACHE", "~/.cache/cnnjax/jax")

  # Several processes (cnnjax.train.distributed.initialize, called by experiments/train.py).
  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = config_dict.placeholder(str)  # 'host:port' of process 0; None: one process (or $JAX_COORDINATOR_ADDRESS).
  c.distributed.num_processes = config_dict.placeholder(int)  # Number of processes (None: from the cluster environment).
  c.distributed.process_id = config_dict.placeholder(int)  # This process, 0 .. num_processes - 1 (None: from the cluster environment).
  c.distributed.initialization_timeout_s = 300  # Seconds for every process to reach the coordinator.
  c.distributed.heartbeat_timeout_s = 100  # Seconds without a heartbeat before a process counts as dead.
  c.distributed.shutdown_timeout_s = 300  # Seconds the shutdown barrier waits for the other processes.
  return c


def lock(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Checks ``config``'s keys against the schema and locks it; returns it."""
  check_keys(config)
  config.lock()
  return config


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in tree.items():
    path = f"{prefix}{key}"
    if isinstance(value, (Mapping, ml_collections.ConfigDict)) and path != "model.kwargs":
      out.update(_flatten(value, path + "."))
    else:
      out[path] = value
  return out


def valid_keys() -> list[str]:
  """The dotted names of every field, e.g. ``'optimizer.learning_rate'``."""
  return sorted(_flatten(base_config()))


def _nearest(key: str, valid: Sequence[str], n: int) -> list[str]:
  """Up to ``n`` keys of ``valid`` nearest ``key``, on the whole dotted name or its last part."""
  close = difflib.get_close_matches(key, valid, n=n, cutoff=0.5)
  # Match on the last component too: 'learning_rte' -> 'optimizer.learning_rate'.
  leaf = key.rsplit(".", 1)[-1]
  by_leaf: dict[str, list[str]] = {}
  for k in valid:
    by_leaf.setdefault(k.rsplit(".", 1)[-1], []).append(k)
  for found in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=0.6):
    close += [k for k in by_leaf[found] if k not in close]
  return close[:n]


def unknown_key_message(key: str, valid: Iterable[str] | None = None) -> str:
  """``unknown config key 'x'; did you mean 'y'?`` and a few valid keys near it.

  A key inside a section (``optimizer.x``) lists that section's keys; a
  top-level one the nearest few, not all of them (``--config.help`` does).
  """
  valid = sorted(valid_keys() if valid is None else valid)
  close = _nearest(key, valid, n=5)
  hint = f"; did you mean {close[0]!r}?" if close else "."
  section = key.rsplit(".", 1)[0] + "." if "." in key else ""
  in_section = [k for k in valid if section and k.startswith(section)]
  if in_section:
    return (f"unknown config key {key!r}{hint} Valid keys under {section[:-1]!r}: "
            f"{', '.join(in_section)}")
  nearby = f" Nearest keys: {', '.join(close)}." if len(close) > 1 else ""
  return (f"unknown config key {key!r}{hint}{nearby} "
          f"`experiments/train.py --config FILE --config.help` lists every key.")


def check_keys(config: Mapping[str, Any]) -> None:
  """Raises ``ValueError`` naming the nearest valid key for any unknown key."""
  valid = set(valid_keys())
  for key in _flatten(config):
    if key not in valid:
      raise ValueError(unknown_key_message(key, valid))


def check_override_flags(argv: Iterable[str], flag: str = "config") -> None:
  """Checks ``--config.a.b=value`` arguments against the schema.

  Raises ``ValueError`` (naming the nearest valid key) before absl parses
  them, so a typo is one clear line instead of a traceback.
  """
  valid = set(valid_keys())
  prefix = f"--{flag}."
  for arg in argv:
    if arg.startswith(prefix):
      key = arg[len(prefix):].split("=", 1)[0]
      if key.startswith("model.kwargs."):
        continue
      if key not in valid:
        raise ValueError(unknown_key_message(key, valid))


def _expected_type(base: ml_collections.ConfigDict, key: str) -> type | None:
  node = base
  *parents, leaf = key.split(".")
  for part in parents:
    node = node[part]
  return node.get_ref(leaf).get_type() if isinstance(node, ml_collections.ConfigDict) else None


def check_types(config: Mapping[str, Any]) -> None:
  """Raises ``TypeError`` naming the key, the expected type and the received value.

  Each field must have the type of its default in ``base_config`` (``None``
  where the default is a placeholder); an int is accepted for a float, a
  list for a tuple. ``ConfigDict`` checks this on assignment; a plain dict
  given to ``train_and_evaluate`` is checked here.
  """
  base = base_config()
  for key, value in _flatten(config).items():
    if key == "model.kwargs" or value is None:
      continue
    expected = _expected_type(base, key)
    if expected is None:
      continue
    ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
    if expected is float:
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is tuple:
      ok = isinstance(value, (tuple, list))
    if not ok:
      raise TypeError(
          f"config {key} must be {expected.__name__}, got {value!r} "
          f"({type(value).__name__})")


def _choice(config, key: str, value: Any, choices: Iterable[str]) -> None:
  choices = list(choices)
  if value not in choices:
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"config {key}={value!r} is not one of {choices}{hint}")


def validate(config: Mapping[str, Any]) -> None:
  """Checks keys, types, names and values of a run config before anything is compiled.

  Raises ``ValueError`` on the first problem (``TypeError`` for a value of
  the wrong type), naming the key, what it expects and what it got.

  Model and data-set names are checked against their registries by the loop,
  which knows them; this checks everything that needs no import beyond optax.
  """
  check_keys(config)
  check_types(config)
  check_model_kwargs(config["model"]["name"], config["model"]["kwargs"])
  _choice(config, "optimizer.name", config["optimizer"]["name"], OPTIMIZERS)
  _choice(config, "schedule.name", config["schedule"]["name"], SCHEDULES)
  _choice(config, "model.dtype", config["model"]["dtype"], DTYPES)
  _choice(config, "strategy", config["strategy"], ("pmap", "shard_map", "jit"))
  _choice(config, "api", config.get("api", "linen"), ("linen", "nnx"))
  _choice(config, "data.pipeline", config["data"]["pipeline"], ("memory", "grain"))
  for key in ("batch_size", "eval_batch_size", "log_every_steps", "max_to_keep",
              "eval_every_epochs"):
    if int(config[key]) <= 0:
      raise ValueError(f"config {key} must be a positive integer, got {config[key]!r}")
  if config["num_epochs"] <= 0 and config["num_train_steps"] <= 0:
    raise ValueError(
        f"set num_epochs > 0 or num_train_steps > 0; got num_epochs="
        f"{config['num_epochs']!r}, num_train_steps={config['num_train_steps']!r}")
  for key in ("checkpoint_every_steps", "checkpoint_every_epochs"):
    if config.get(key, 0) < 0:
      raise ValueError(f"config {key} must be >= 0, got {config[key]!r}")
  if not 0.0 <= config["label_smoothing"] < 1.0:
    raise ValueError(f"config label_smoothing must be in [0, 1), got {config['label_smoothing']!r}")
  if config["mixup_alpha"] < 0 or config["cutmix_alpha"] < 0:
    raise ValueError("config mixup_alpha and cutmix_alpha must be >= 0")
  _check_task(config)
  distributed = config.get("distributed") or {}
  for key in ("initialization_timeout_s", "heartbeat_timeout_s", "shutdown_timeout_s"):
    if key in distributed and distributed[key] <= 0:
      raise ValueError(
          f"config distributed.{key} must be a positive number of seconds, got "
          f"{distributed[key]!r}")
  subset = config["data"]["train_subset"]
  if subset is not None and subset <= 0:
    raise ValueError(f"config data.train_subset must be a positive integer or None, got {subset!r}")


TASKS = ("classification", "regression", "segmentation")


def _check_task(config: Mapping[str, Any]) -> None:
  """The task's name and the options that only make sense for some tasks."""
  task = config.get("task", "classification")
  _choice(config, "task", task, TASKS)
  _choice(config, "regression_loss", config.get("regression_loss", "mse"), ("mse", "huber"))
  if config.get("target_std", 1.0) <= 0 or config.get("huber_delta", 1.0) <= 0:
    raise ValueError(
        f"config target_std and huber_delta must be positive, got target_std="
        f"{config.get('target_std')!r}, huber_delta={config.get('huber_delta')!r}")
  if task == "segmentation" and config["mixup_alpha"] > 0:
    raise ValueError(
        f"config mixup_alpha={config['mixup_alpha']!r} with task='segmentation': mixup blends "
        f"two images, so a pixel would have two classes; set mixup_alpha=0 (cutmix_alpha "
        f"works: the pasted box carries its labels)")
  if task == "regression" and (config["mixup_alpha"] > 0 or config["cutmix_alpha"] > 0):
    raise ValueError(
        f"config mixup_alpha={config['mixup_alpha']!r}, cutmix_alpha={config['cutmix_alpha']!r} "
        f"with task='regression': mixed images have no single target; set both to 0")
  if task != "classification" and config["label_smoothing"] > 0:
    raise ValueError(
        f"config label_smoothing={config['label_smoothing']!r} applies to classification only, "
        f"got task={task!r}; set label_smoothing=0")


def to_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
  """A plain, JSON-serialisable dict of a config (tuples become lists)."""
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  return json.loads(json.dumps(config, default=str))


def _comments() -> dict[str, str]:
  """The one-line comment of every key of ``base_config``, read from its source."""
  out = {}
  for line in inspect.getsource(base_config).splitlines():
    match = re.match(r"\s*c\.([\w.]+) = (.*?)\s+#\s*(.*)$", line)
    if match:
      out[match.group(1)] = match.group(3)
  return out


def describe(config: ml_collections.ConfigDict) -> str:
  """Every config key with its value and comment, then the chosen model's fields.

  What ``experiments/train.py --config FILE --config.help`` prints.
  """
  comments = _comments()
  lines = ["Config keys (set with --config.KEY=VALUE):"]
  flat = _flatten(config)
  width = max(len(k) for k in flat)
  for key, value in sorted(flat.items()):
    if key == "model.kwargs":
      value = to_dict(value)
    lines.append(f"  {key:<{width}} = {value!r:<14} # {comments.get(key, '')}")
  try:
    fields = model_fields(config.model.name)
  except ValueError as e:
    lines.append(str(e))
    return "\n".join(lines)
  lines.append(f"\nFields of model {config.model.name!r} "
               f"(set with --config.model.kwargs.FIELD=VALUE):")
  current = dict(config.model.kwargs)
  width = max(len(f) for f in fields)
  for name, field in fields.items():
    value = current.get(name, field.default)
    shown = "(required)" if value is dataclasses.MISSING else repr(value)
    if not isinstance(value, (int, float, str, bool, tuple, list, type(None))):
      shown = getattr(value, "__name__", type(value).__name__)
    note = f"  [{field.note}]" if field.note else ""
    lines.append(f"  {name:<{width}} : {field.type_name} = {shown}{note}")
  return "\n".join(lines)


def warn_about_backend(config: Mapping[str, Any], backend: str | None = None) -> str | None:
  """Warns once per process when ``model.dtype`` is slow on the backend: bfloat16 on CPU.

  Args:
    config: a run config.
    backend: ``jax.default_backend()`` when ``None``.

  Returns:
    The warning (also logged), or ``None``.
  """
  dtype = config["model"]["dtype"]
  if dtype != "bfloat16":  # float16 on CPU is unmeasured: no claim about it.
    return None
  if backend is None:
    import jax  # noqa: PLC0415

    backend = jax.default_backend()
  if backend != "cpu":
    return None
  message = CPU_DTYPE_ADVICE.format(dtype=dtype, ratio=CPU_BF16_RATIO)
  if (dtype, backend) not in _WARNED:
    _WARNED.add((dtype, backend))
    log.warning("%s", message)
  return message
