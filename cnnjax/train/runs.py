"""Run directories: what ``train_and_evaluate`` writes, and reading it back.

A run directory holds ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
``plots/*.png`` and ``summary.json``. This module owns every file of it but
the metrics (``cnnjax.train.metrics``) and the checkpoints' format
(``cnnjax.train.checkpoint``):

* ``prepare_workdir``: create it (``fresh`` moves an old run aside to
  ``<workdir>.old-<YYYYmmdd-HHMMSS>``, never deletes it);
* ``finished_summary``: the summary of a run that already reached its last
  step, so that running the same command again changes nothing on disk;
* ``write_config``, ``write_summary``;
* ``abstract_train_state``, ``restore_checkpoint`` and ``load_run``: a trained
  run's state, or its model and variables, on any devices.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

import flax.linen as nn
import jax
import ml_collections

from cnnjax.train import config as config_lib
from cnnjax.train.checkpoint import CheckpointMismatchError, Checkpointer, abstract_target
from cnnjax.train.checkpoint import check_fits
from cnnjax.train.checkpoint import readable as checkpoint_readable
from cnnjax.train.state import TrainState

PyTree = Any
log = logging.getLogger(__name__)


def is_main() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits for every process (a no-op in a single-process run)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415
    multihost_utils.sync_global_devices(name)


def prepare_workdir(workdir: str, fresh: bool) -> str:
  """Creates the run directory and checks it is writable; returns its absolute path.

  With ``fresh``, a non-empty ``workdir`` is first renamed to
  ``<workdir>.old-<YYYYmmdd-HHMMSS>`` (logged): starting over never deletes a run.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if is_main():
    if fresh and os.path.isdir(workdir) and os.listdir(workdir):
      aside = f"{workdir}.old-{time.strftime('%Y%m%d-%H%M%S')}"
      os.rename(workdir, aside)
      log.warning("--fresh: moved the previous run %s to %s", workdir, aside)
    try:
      os.makedirs(workdir, exist_ok=True)
      probe = os.path.join(workdir, f".write-test-{os.getpid()}")
      with open(probe, "w") as f:
        f.write("ok")
      os.remove(probe)
    except OSError as e:
      raise ValueError(
          f"work directory {workdir} is not writable ({e.strerror or e}); choose "
          f"another with --workdir DIR or fix its permissions") from e
  barrier("cnnjax-workdir")
  return workdir


def _checkpoint_steps(workdir: str) -> list[int]:
  """Committed checkpoint steps, read from the directory listing (nothing opened or created)."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def finished_summary(workdir: str, total_steps: int,
                     target: dict[str, PyTree] | None = None) -> dict[str, Any] | None:
  """``summary.json`` of a run in ``workdir`` that already trained ``total_steps`` steps, else ``None``.

  A run is finished when its summary records ``steps >= total_steps`` and its
  newest checkpoint is that step, with readable metadata: the summary was
  written after the final checkpoint. A run interrupted before writing its summary, or one asked now to
  train longer, is not finished (it resumes).
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  try:
    with open(os.path.join(workdir, "summary.json")) as f:
      summary = json.load(f)
    steps = int(summary["steps"])
  except (OSError, ValueError, KeyError, TypeError):
    return None
  checkpoints = _checkpoint_steps(workdir)
  if steps < total_steps or not checkpoints or checkpoints[-1] != steps:
    return None
  directory = os.path.join(workdir, "checkpoints")
  if not checkpoint_readable(directory, steps):
    return None  # A damaged final checkpoint: resume from an older one and train again.
  if target is not None:
    check_fits(directory, steps, target)
  return summary


def finished_message(summary: dict[str, Any]) -> str:
  """``run already finished at step N — summary.json: test accuracy X; use --fresh ...``.

  The metric shown is the summary's ``primary_metric`` (``test_mae``,
  ``test_mean_iou``, ...), ``test_accuracy`` for summaries without one.
  """
  key = summary.get("primary_metric", "test_accuracy")
  value = summary.get(key)
  shown = f"{value:.4f}" if isinstance(value, (int, float)) else repr(value)
  name = key.removeprefix("test_").replace("_", " ")
  return (f"run already finished at step {summary['steps']} — summary.json: test {name} "
          f"{shown}; use --fresh to start over (the old run is moved aside, not deleted)")


def write_json(workdir: str, name: str, value: Any) -> None:
  """Writes ``workdir/name`` (process 0 only), replacing it atomically."""
  if not is_main():
    return
  path = os.path.join(workdir, name)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=name == "config.json")
  os.replace(tmp, path)


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """``config.json``: the resolved config, every key."""
  write_json(workdir, "config.json", config_lib.to_dict(config))


def trained_with(workdir: str, config: ml_collections.ConfigDict) -> str:
  """`` ... says it was trained with model.name=...`` from the run's ``config.json``, if readable."""
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      recorded = json.load(f)
    model, data = recorded["model"], recorded["data"]
  except (OSError, ValueError, KeyError, TypeError):
    return ""
  return (f" {os.path.join(workdir, 'config.json')} says it was trained with "
          f"model.name={model.get('name')!r}, model.kwargs={model.get('kwargs')!r}, "
          f"data.name={data.get('name')!r}; this config has model.name="
          f"{config.model.name!r}, model.kwargs={config_lib.to_dict(config.model.kwargs)!r}, "
          f"data.name={config.data.name!r}.")


def check_api(workdir: str, config: ml_collections.ConfigDict) -> None:
  """A ``CheckpointMismatchError`` if ``workdir``'s run was trained with another ``config.api``.

  A linen run's checkpoints hold a ``TrainState`` and an NNX run's an
  ``NNXTrainState``: the same ``params`` and ``batch_stats``, other optimizer
  state. Said before any checkpoint is read, with the way to resume it.
  """
  try:
    with open(os.path.join(workdir, "config.json")) as f:
      recorded = json.load(f).get("api", "linen")
  except (OSError, ValueError, AttributeError):
    return
  wanted = config.get("api", "linen")
  if recorded != wanted:
    raise CheckpointMismatchError(
        f"{workdir} holds a run trained with config api={recorded!r}, this config has "
        f"api={wanted!r}; their checkpoints hold different optimizer states. Resume it with "
        f"--config.api={recorded}, start over with --fresh (the old run is moved aside), or "
        f"load its weights with load_run (and cnnjax.nnx.from_linen for an NNX model)")


# Reading a run back.


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The config a run was trained with, from ``workdir/config.json``."""
  path = os.path.join(os.fspath(workdir), "config.json")
  if not os.path.isfile(path):
    raise ValueError(
        f"{os.fspath(workdir)!r} is not a training run: no config.json in it. Train one with "
        f"python experiments/train.py --config experiments/configs/digits_cnn.py "
        f"--workdir {os.fspath(workdir)}")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def _model_and_shape(config, model: nn.Module | None, data: Any, axis_name: str | None):
  from cnnjax.train import setup  # noqa: PLC0415
  if data is None:
    data = setup.NamedData(config)
  if model is None:
    from cnnjax.train import tasks  # noqa: PLC0415
    outputs = tasks.from_config(config).num_outputs(getattr(data, "info", data))
    model = setup.model_from_config(config, outputs, axis_name)
  return model, data.image_shape


def abstract_train_state(
    config: ml_collections.ConfigDict, *, model: nn.Module | None = None, data: Any = None,
    steps_per_epoch: int = 1, num_epochs: float = 1.0
) -> TrainState:
  """The state a config trains, as ``jax.ShapeDtypeStruct``s (``jax.eval_shape``).

  A ``TrainState``, or an ``NNXTrainState`` for ``config.api='nnx'``.

  Nothing is allocated or compiled; the optimizer's schedule does not change
  the state's structure, so the defaults of ``steps_per_epoch`` and
  ``num_epochs`` serve for restoring. ``model`` and ``data`` override
  ``config.model`` and ``config.data`` (for a run trained with objects; see
  ``cnnjax.train.setup``).
  """
  from cnnjax.train import optim, setup  # noqa: PLC0415

  model, image_shape = _model_and_shape(config, model, data, None)
  tx = optim.create_optimizer(config.optimizer, config.schedule, steps_per_epoch, num_epochs)
  return jax.eval_shape(lambda: setup.create_state(
      model, tx, api=config.get("api", "linen"), seed=config.seed,
      input_shape=(1, *image_shape)))


def restore_checkpoint(
    config: ml_collections.ConfigDict,
    workdir: str,
    sharding: jax.sharding.Sharding | None = None,
    *,
    model: nn.Module | None = None,
    data: Any = None,
) -> tuple[int, TrainState, dict[str, Any]]:
  """Reads the newest readable checkpoint of a run, on any devices and under any strategy.

  Args:
    config: the run's config (for the state's structure).
    workdir: the run directory.
    sharding: where the arrays go; default the first local device, so a
      checkpoint written on N devices loads on one CPU.
    model, data: the module and data set the run trained on, if they were
      passed as objects.

  Returns:
    ``(step, state, data_state)``: a ``TrainState`` with ``apply_fn`` and
    ``tx`` set, and the training loader's position.
  """
  abstract = abstract_train_state(config, model=model, data=data)
  checkpointer = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"),
                              async_save=False)
  try:
    restored = checkpointer.restore(abstract_target(abstract.checkpoint_items(), sharding))
  finally:
    checkpointer.close()
  if restored is None:
    raise ValueError(f"no checkpoint in {checkpointer.directory}")
  step, items, data_state = restored
  return step, abstract.replace_checkpoint_items(items), data_state


@dataclasses.dataclass(frozen=True)
class Run:
  """A trained run, ready for ``model.apply(variables, x, train=False)``.

  Attributes:
    model: the module the config names, with the data set's ``num_classes``
      and no device axis (``axis_name=None``: inspection runs on one device).
    variables: ``{'params': ..., 'batch_stats': ...}`` of the newest checkpoint
      (an NNX run's too: ``cnnjax.nnx.from_linen(nnx_model, run.variables)``
      puts them into an NNX model).
    config: the run's config (``config.json``).
    step: the checkpoint's training step.
    workdir: the run directory (absolute).
  """

  model: nn.Module
  variables: PyTree
  config: ml_collections.ConfigDict
  step: int
  workdir: str


def load_run(workdir: str | os.PathLike, *, model: nn.Module | None = None,
             data: Any = None) -> Run:
  """Restores the newest checkpoint of a run made by ``experiments/train.py``.

  Example::

    run = load_run('runs/digits')
    logits = run.model.apply(run.variables, images, train=False)

  ``model`` and ``data``: the objects the run was trained with, if it was
  not trained from names (``train_and_evaluate(..., model=, data=)``).

  Raises:
    ValueError: no ``config.json`` or no checkpoint in ``workdir``.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  config = read_config(workdir)
  model, _ = _model_and_shape(config, model, data, None)
  step, state, _ = restore_checkpoint(config, workdir, model=model, data=data)
  variables = {k: v for k, v in state.variables().items() if k == "params" or v}
  return Run(model=model, variables=variables, config=config, step=int(step), workdir=workdir)
