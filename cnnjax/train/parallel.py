"""Running the steps over devices: ``pmap``, ``shard_map`` or ``jit``.

``Parallel(strategy)`` compiles a step (see ``cnnjax.train.steps``) for all
devices and moves states and batches into the layout it expects. The step is
called with ``axis_name=parallel.axis_name``: ``AXIS`` for the two mapped
strategies, whose body sees one device's share and reduces with collectives,
``None`` for ``'jit'``, whose body sees the global batch:

* ``'pmap'`` (the default): ``jax.pmap(step, axis_name=AXIS,
  donate_argnums=(0,))`` over the local devices. The state carries a leading
  device axis ``(local_devices, ...)``; a host batch of ``B_local`` examples
  becomes ``(local_devices, B_local / local_devices, ...)``.
* ``'shard_map'``: ``jax.jit(jax.shard_map(step, mesh=Mesh(devices, (AXIS,)),
  in_specs=(P(), P(AXIS)), out_specs=(P(), P())), donate_argnums=(0,))``. The
  state is one array per leaf, replicated (``P()``); batches are global
  arrays split along their first axis (``P(AXIS)``). ``check_vma=False``
  gives the step pmap's semantics: ``jax.grad`` inside it returns this
  device's gradient, which the step then ``pmean``-s itself (with
  ``check_vma=True`` the gradient of a replicated input would already be
  summed over devices, and averaging it again would scale it by the device
  count).
* ``'jit'``: ``jax.jit(step, in_shardings=(P(), P(AXIS)), out_shardings=P(),
  donate_argnums=(0,))`` over the same mesh and layout as ``'shard_map'``.
  The step is written for the global batch, with no collective and no
  ``axis_name`` in the model: XLA's SPMD partitioner splits the computation
  along the batch and inserts the all-reduces the global arrays need (the
  gradients' sum, BatchNorm's moments, the metrics' sums), so BatchNorm
  normalises with the statistics of the global batch.

With several processes (``jax.distributed``) each process passes its own
``B_local`` examples; both strategies span the devices of all processes.

``host_state`` brings a device state back to one host copy (numpy), checking
that the device copies agree; it is what checkpoints and evaluation summaries
use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax.train.steps import AXIS

PyTree = Any
STRATEGIES = ("pmap", "shard_map", "jit")


def _mesh(devices: list[jax.Device]) -> Mesh:
  """A one-axis mesh named ``AXIS`` over ``devices`` in their order.

  The axis type is ``Auto`` (sharding propagated by XLA), the behaviour every
  supported JAX has; ``jax.make_mesh`` defaults to ``Explicit`` axes since
  JAX 0.7, which would make shardings part of the traced types.
  """
  axis_type = getattr(jax.sharding, "AxisType", None)
  if axis_type is None:  # An older JAX without axis types: Mesh is always Auto.
    return Mesh(np.array(devices), (AXIS,))
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices,
                       axis_types=(axis_type.Auto,))


class Parallel:
  """Compiles steps and lays out states and batches for one strategy.

  Attributes:
    strategy: ``'pmap'``, ``'shard_map'`` or ``'jit'``.
    max_in_flight: how many dispatched steps a caller should let run ahead
      before waiting for the oldest (``None``: no limit): 2 on a CPU platform
      with several devices, whose collectives can deadlock under a deep
      asynchronous queue.
    axis_name: what the step and the model's BatchNorm reduce over: ``AXIS``,
      or ``None`` under ``'jit'`` (global arrays).
    local_device_count: devices of this process.
    device_count: devices of all processes.
  """

  def __init__(self, strategy: str = "pmap", devices: list[jax.Device] | None = None):
    """Creates the device layout.

    Args:
      strategy: ``'pmap'``, ``'shard_map'`` or ``'jit'``.
      devices: for tests in one process, a subset of ``jax.local_devices()`` to
        run on; by default all devices (all processes).
    """
    if strategy not in STRATEGIES:
      raise ValueError(
          f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)} "
          f"(config key strategy)")
    self.strategy = strategy
    self.axis_name = None if strategy == "jit" else AXIS
    self._explicit = devices is not None
    if devices is None:
      self.devices = jax.devices()
      self.local_devices = jax.local_devices()
    else:
      if jax.process_count() > 1:
        raise ValueError("an explicit device list is only supported in one process")
      self.devices = list(devices)
      self.local_devices = list(devices)
    self.device_count = len(self.devices)
    self.local_device_count = len(self.local_devices)
    self.mesh = _mesh(self.devices)
    self._local_mesh = _mesh(self.local_devices)
    # XLA:CPU runs the devices of a multi-device (fake or not) CPU platform on
    # one thread pool; with tens of steps queued by asynchronous dispatch, the
    # participants of one all-reduce can wait behind each other's queued
    # steps until XLA aborts the process ("Termination timeout for all
    # reduce"). Two steps in flight keep the host ahead of the devices and
    # never deadlock (measured with 2, 4 and 8 devices, all three strategies).
    cpu = self.devices[0].platform == "cpu"
    self.max_in_flight: int | None = 2 if cpu and self.device_count > 1 else None
    self._replicated = NamedSharding(self.mesh, P())
    self._split = NamedSharding(self.mesh, P(AXIS))
    self._local_split = NamedSharding(self._local_mesh, P(AXIS))

  def __repr__(self) -> str:
    return (f"Parallel(strategy={self.strategy!r}, devices={self.device_count}, "
            f"local_devices={self.local_device_count})")

  # Compilation.

  def train_step(self, step: Callable) -> Callable:
    """Maps ``step(state, batch) -> (state, metrics)``; donates the state."""
    if self.strategy == "pmap":
      return jax.pmap(step, axis_name=AXIS, donate_argnums=(0,),
                      devices=self.devices if self._explicit else None)
    if self.strategy == "jit":
      return jax.jit(step, in_shardings=(self._replicated, self._split),
                     out_shardings=(self._replicated, self._replicated),
                     donate_argnums=(0,))
    mapped = jax.shard_map(step, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                           out_specs=(P(), P()), check_vma=False)
    return jax.jit(mapped, donate_argnums=(0,))

  def eval_step(self, step: Callable) -> Callable:
    """Maps ``step(state, batch) -> metrics``."""
    if self.strategy == "pmap":
      return jax.pmap(step, axis_name=AXIS,
                      devices=self.devices if self._explicit else None)
    if self.strategy == "jit":
      return jax.jit(step, in_shardings=(self._replicated, self._split),
                     out_shardings=self._replicated)
    return jax.jit(jax.shard_map(step, mesh=self.mesh, in_specs=(P(), P(AXIS)),
                                 out_specs=P(), check_vma=False))

  # Layout.

  def check_batch_size(self, global_batch_size: int, what: str = "batch_size") -> int:
    """Returns the per-device batch size; a ``ValueError`` if it does not divide."""
    if global_batch_size <= 0 or global_batch_size % self.device_count:
      raise ValueError(
          f"{what}={global_batch_size} must be a positive multiple of the "
          f"number of devices ({self.device_count}: "
          f"{jax.process_count()} process(es) x {self.local_device_count} "
          f"local); e.g. {what}={max(1, global_batch_size // self.device_count) * self.device_count}")
    return global_batch_size // self.device_count

  def shard_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
    """Lays out this process's batch (``B_local`` leading) for the mapped step."""
    out = {}
    for name, x in batch.items():
      x = np.asarray(x)
      if x.shape[0] % self.local_device_count:
        raise ValueError(
            f"batch[{name!r}] has {x.shape[0]} examples on this process, not a "
            f"multiple of its {self.local_device_count} local devices; choose a "
            f"global batch size divisible by {self.device_count}")
      if self.strategy == "pmap":
        x = x.reshape((self.local_device_count, -1) + x.shape[1:])
        out[name] = jax.device_put(x, self._local_split)
      else:
        out[name] = jax.make_array_from_process_local_data(self._split, x)
    return out

  def put_state(self, state: PyTree) -> PyTree:
    """Puts one copy of a state (host or device arrays) on every device."""
    def put(x):
      x = np.asarray(x)
      if self.strategy == "pmap":
        stacked = np.broadcast_to(x, (self.local_device_count,) + x.shape)
        return jax.device_put(np.ascontiguousarray(stacked), self._local_split)
      return jax.make_array_from_process_local_data(self._replicated, x)
    return jax.tree_util.tree_map(put, state)

  def host_state(self, state: PyTree, check: tuple[str, ...] = ("batch_stats",)) -> PyTree:
    """One host copy (numpy) of a replicated device state.

    Args:
      state: a state laid out by ``put_state`` or returned by a mapped step.
      check: names of fields (attributes) whose device copies must be equal;
        the running BatchNorm statistics are ``pmean``-ed inside the step, so
        a disagreement is a bug, reported as a ``ValueError``.
    """
    if self.strategy == "pmap":
      for name in check:
        tree = getattr(state, name, None)
        for path, x in jax.tree_util.tree_leaves_with_path(tree):
          copies = [np.asarray(s.data) for s in x.addressable_shards]
          if any(not np.array_equal(copies[0], c, equal_nan=True) for c in copies[1:]):
            raise ValueError(
                f"device copies of {name}{jax.tree_util.keystr(path)} differ; "
                f"statistics must be averaged over the axis {AXIS!r}")
    # One device_get of the first copies: every transfer starts before any is waited for.
    host = jax.device_get(jax.tree_util.tree_map(lambda x: x.addressable_shards[0].data, state))
    if self.strategy == "pmap":
      return jax.tree_util.tree_map(lambda x: x[0], host)
    return host

  def host_metrics(self, metrics: PyTree) -> PyTree:
    """Host values of metrics returned by a mapped step (one copy)."""
    return self.host_state(metrics, check=())
