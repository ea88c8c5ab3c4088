"""Checkpoints of the training state and the data position, with orbax.

A checkpoint ``checkpoints/<step>/`` holds two items written together by one
``ocp.CheckpointManager.save`` (an ``ocp.args.Composite``):

* ``state``: ``step``, ``params``, ``batch_stats``, ``opt_state`` and ``rng``
  (``ocp.args.StandardSave`` of one host copy);
* ``data``: the training loader's ``get_state()`` (``ocp.args.JsonSave``).

Saves are asynchronous by default: ``save`` returns once the arrays are
captured, the files are written in a background thread, and ``wait`` blocks
until they are and raises what the writer raised. With several processes every
process calls ``save`` and ``restore`` (orbax writes each array once).

``restore`` reads the newest checkpoint into an abstract target (shapes,
dtypes and a sharding, from ``jax.eval_shape`` of the initialisation), so a
checkpoint written on N devices restores on M devices or on the CPU. If the
newest checkpoint cannot be read (a truncated or corrupted file), it logs a
warning naming that step, tries the next older one, and moves the unreadable
step directories to ``<directory>-unreadable/`` so training can write those
steps again. Before reading any array it compares the names and shapes of the
checkpoint's ``params`` and ``batch_stats`` (its metadata) with the target's: a
checkpoint of another model is a ``CheckpointMismatchError`` naming the
differing arrays and both shapes, not an orbax error and not a fallback.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

PyTree = Any
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
  """A checkpoint could not be written (e.g. the disk is full)."""


class CheckpointMismatchError(ValueError):
  """A checkpoint holds parameters of other names or shapes than the model restoring it.

  A configuration mistake (another model, another ``num_classes`` or width),
  not a damaged file: ``Checkpointer.restore`` raises it at once instead of
  falling back to an older checkpoint.
  """


#: The state items compared with a checkpoint before restoring it: the model's.
MODEL_ITEMS = ("params", "batch_stats")
_MAX_LISTED = 6


def _key_name(key: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _shapes(tree: PyTree) -> dict[str, tuple[int, ...]]:
  return {"/".join(_key_name(k) for k in path): tuple(np.shape(leaf))
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _mismatch(saved: Mapping[str, PyTree], target: Mapping[str, PyTree]) -> list[str]:
  """Differences in names and shapes of the model items, one line each (empty if none)."""
  problems = []
  for item in MODEL_ITEMS:
    if item not in target:
      continue
    want = {f"{item}/{k}": v for k, v in _shapes(target[item]).items()}
    have = {f"{item}/{k}": v for k, v in _shapes(saved.get(item, {})).items()}
    for path in sorted(set(want) & set(have)):
      if want[path] != have[path]:
        problems.append(f"{path} has shape {have[path]} in the checkpoint but "
                        f"{want[path]} in the model")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing:
      problems.append(f"the model has {len(missing)} array(s) the checkpoint lacks, e.g. "
                      f"{', '.join(missing[:3])}")
    if extra:
      problems.append(f"the checkpoint has {len(extra)} array(s) the model lacks, e.g. "
                      f"{', '.join(extra[:3])}")
  return problems


def abstract_target(tree: PyTree, sharding: jax.sharding.Sharding | None = None) -> PyTree:
  """``jax.ShapeDtypeStruct``s of ``tree`` with one sharding (default: the first local device).

  ``tree`` may hold arrays or ``ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``).
  """
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding), tree)


def _describe_os_error(error: BaseException, directory: str, step: int, earlier: list[int]) -> str | None:
  cause = error
  while cause is not None and not isinstance(cause, OSError):
    cause = cause.__cause__ or cause.__context__
  if cause is None:
    return None
  if cause.errno == errno.ENOSPC:
    what = "the disk is full (ENOSPC)"
  elif cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    what = f"the directory is not writable ({os.strerror(cause.errno)})"
  else:
    what = f"{type(cause).__name__}: {cause}"
  kept = f"earlier checkpoints {earlier} are intact" if earlier else "no earlier checkpoint exists"
  return (f"could not write checkpoint step {step} to {directory}: {what}; {kept}. "
          f"Free space or fix permissions and rerun the same command to resume.")


def readable(directory: str | os.PathLike, step: int) -> bool:
  """Whether checkpoint ``step`` in ``directory`` has readable state metadata (arrays not read).

  Opens nothing for writing, so it serves to decide that a run is finished
  without touching it; a damaged checkpoint is left to ``Checkpointer.restore``.
  """
  try:
    from etils import epath  # noqa: PLC0415
    ocp.StandardCheckpointHandler().metadata(epath.Path(os.fspath(directory)) / str(step) / "state")
  except Exception:  # Any failure to read: not usable as the run's last state.
    return False
  return True


def check_fits(directory: str, step: int, target: Mapping[str, PyTree]) -> None:
  """Raises ``CheckpointMismatchError`` if checkpoint ``step`` in ``directory`` holds another model.

  Reads only the checkpoint's metadata (names, shapes); a checkpoint whose
  metadata cannot be read is left to ``Checkpointer.restore``'s fallback.
  """
  try:
    from etils import epath  # noqa: PLC0415
    saved = ocp.StandardCheckpointHandler().metadata(
        epath.Path(os.fspath(directory)) / str(step) / "state")
    saved = {k: saved[k] for k in MODEL_ITEMS if k in saved}
  except Exception:  # Unreadable metadata: a damaged checkpoint, handled by the fallback.
    return
  problems = _mismatch(saved, target)
  if problems:
    listed = "; ".join(problems[:_MAX_LISTED])
    more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise CheckpointMismatchError(
        f"checkpoint step {step} in {os.fspath(directory)} does not fit the model being "
        f"restored: {listed}{more}. The checkpoint was written by another model or "
        f"model configuration (model.name, model.kwargs, the data set's number of "
        f"classes); resume with the config it was trained with, or start over with "
        f"--fresh (or another --workdir).")


class Checkpointer:
  """Periodic checkpoints of a run: save, wait, restore with fallback.

  Args:
    directory: where ``<step>/`` directories go (created if missing).
    max_to_keep: how many of the newest checkpoints to keep.
    async_save: write in a background thread.
  """

  def __init__(self, directory: str | os.PathLike, *, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(os.fspath(directory))
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "data"))
    self._pending: int | None = None

  def all_steps(self) -> list[int]:
    """Steps of the complete checkpoints on disk, ascending."""
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def _steps_on_disk(self) -> list[int]:
    """Committed steps: ``<step>`` directories (orbax writes ``<step>.orbax-checkpoint-tmp`` first)."""
    try:
      names = os.listdir(self.directory)
    except OSError:
      return []
    return sorted(int(n) for n in names
                  if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  def latest_step(self) -> int | None:
    """The newest complete checkpoint's step, or ``None``."""
    steps = self.all_steps()
    return steps[-1] if steps else None

  def save(self, step: int, state: Mapping[str, PyTree], data_state: Mapping[str, Any]) -> None:
    """Starts writing checkpoint ``step``.

    Args:
      step: the training step (number of updates applied).
      state: ``TrainState.checkpoint_items()`` of one host copy.
      data_state: the training loader's ``get_state()``.

    Raises:
      CheckpointError: the write failed (disk full, permissions); earlier
        checkpoints are left as they were.
    """
    # A failure of the previous asynchronous save is reported with its own step.
    self.wait()
    earlier = [s for s in self._steps_on_disk() if s != step]
    try:
      self._manager.save(
          step,
          args=ocp.args.Composite(
              state=ocp.args.StandardSave(dict(state)),
              data=ocp.args.JsonSave(dict(data_state))),
          force=True)
    except Exception as e:
      message = _describe_os_error(e, self.directory, step, earlier)
      if message:
        raise CheckpointError(message) from e
      raise
    self._pending = step

  def wait(self) -> None:
    """Blocks until pending writes finish; raises ``CheckpointError`` if one failed."""
    step, self._pending = self._pending, None
    try:
      self._manager.wait_until_finished()
    except Exception as e:
      # From the directory: orbax's own list already holds the failed step.
      earlier = [s for s in self._steps_on_disk() if s != step]
      message = _describe_os_error(e, self.directory, step if step is not None else -1, earlier)
      if message:
        raise CheckpointError(message) from e
      raise

  def restore(self, target: Mapping[str, PyTree]) -> tuple[int, dict[str, PyTree], dict[str, Any]] | None:
    """Restores the newest readable checkpoint.

    Args:
      target: abstract ``TrainState.checkpoint_items()`` (see
        ``abstract_target``): the structure, shapes, dtypes and shardings to
        restore into.

    Returns:
      ``(step, state_items, data_state)``, or ``None`` if there is no
      checkpoint. A checkpoint that fails to load is skipped with a warning
      naming its step; if none loads, the last error is raised.

    Raises:
      CheckpointMismatchError: the checkpoint's parameters or statistics have
        other names or shapes than ``target``'s (checked on the metadata,
        before any array is read; never a reason to fall back).
      ValueError: no checkpoint could be read.
    """
    steps = self.all_steps()
    last_error: Exception | None = None
    bad: list[int] = []
    for step in reversed(steps):
      self._check_fits(step, target)
      try:
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(dict(target)),
                data=ocp.args.JsonRestore()))
      except Exception as e:  # Any failure to read means: try an older one.
        log.warning("checkpoint step %d in %s could not be restored (%s: %s); "
                    "trying an older checkpoint", step, self.directory,
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        last_error = e
        bad.append(step)
        continue
      self._quarantine(bad)
      return step, dict(restored["state"]), dict(restored["data"])
    if last_error is not None:
      raise ValueError(
          f"no checkpoint in {self.directory} could be restored (tried steps "
          f"{list(reversed(steps))}); the newest error is above. Start over with "
          f"--fresh, or remove the broken step directories.") from last_error
    return None

  def _check_fits(self, step: int, target: Mapping[str, PyTree]) -> None:
    check_fits(self.directory, step, target)

  def _quarantine(self, steps: list[int]) -> None:
    """Moves unreadable step directories to ``<directory>-unreadable/`` so the run can rewrite them."""
    if not steps:
      return
    if jax.process_index() == 0:
      aside = f"{self.directory}-unreadable"
      os.makedirs(aside, exist_ok=True)
      for step in steps:
        source = os.path.join(self.directory, str(step))
        if os.path.isdir(source):
          target = os.path.join(aside, f"{step}-{int(time.time())}")
          shutil.move(source, target)
          log.warning("moved unreadable checkpoint step %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # noqa: PLC0415
      multihost_utils.sync_global_devices("cnnjax-checkpoint-quarantine")
    self._manager.reload()

  def close(self) -> None:
    """Waits for pending writes and releases the manager."""
    try:
      self.wait()
    finally:
      self._manager.close()
