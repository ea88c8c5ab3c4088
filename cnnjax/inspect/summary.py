"""Model summaries: a table of layers with output shapes, parameters and MACs.

MACs (multiply-accumulates) are counted analytically from each layer that
owns a ``kernel`` parameter (convolutions, dense layers): for a kernel
``(*K, C_in / groups, C_out)`` producing an output with ``P`` positions per
channel (``P = N * prod(out_spatial)``), ``MACs = P * prod(K) * C_in /
groups * C_out``, the formula of ``cnnjax.ops.conv_macs``. Norms, pools and
nonlinearities are not counted (they are a few percent of a CNN's FLOPs);
FLOPs are about ``2 * MACs``.

XLA's own count (``jax.jit(f).lower(x).cost_analysis()['flops']``) agrees
within a few percent when padding is materialised (``'CIRCULAR'``,
``'VALID'``), and is lower with zero padding, whose taps it skips (13% of
ResNet-18's at 32x32); the analytic count here includes every tap, as
``ops.conv_macs`` and published figures do.

The forward pass runs under ``jax.eval_shape``: nothing is computed or
allocated, so ImageNet-sized models are summarised in seconds.
"""

from __future__ import annotations

import dataclasses
import inspect as pyinspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LayerInfo:
  """One row of a summary.

  Attributes:
    path: the module's path, e.g. ``'stage1_block0/conv1'`` (``''`` for the model).
    kind: the module's class name.
    output_shape: shape of its output (first array output).
    params: parameters of the module and its submodules.
    macs: multiply-accumulates of this call when the module owns a
      ``kernel``, else 0.
  """

  path: str
  kind: str
  output_shape: tuple[int, ...]
  params: int
  macs: int


def count_params(variables_or_params: Any) -> int:
  """Number of parameters: the ``'params'`` collection if present, else every leaf.

  Accepts the output of ``model.init`` (``batch_stats`` are not counted), a
  params tree, or shape structs from ``jax.eval_shape``.
  """
  tree = variables_or_params
  if isinstance(tree, dict) or hasattr(tree, "keys"):
    if "params" in tree:
      tree = tree["params"]
  return int(sum(math.prod(getattr(leaf, "shape", ())) for leaf in jax.tree.leaves(tree)))


def _kernel_macs(kernel_shape: Sequence[int], output: Any) -> int:
  """MACs of a layer with a ``(..., C_in / g, C_out)`` kernel and an output ``(..., C_out)``."""
  c_out = kernel_shape[-1]
  shape = tuple(output.shape)
  if not shape or shape[-1] != c_out:
    return 0
  positions = math.prod(shape[:-1])
  return positions * math.prod(kernel_shape[:-1]) * c_out


def _first_array(out: Any) -> Any:
  for leaf in jax.tree.leaves(out):
    if hasattr(leaf, "shape"):
      return leaf
  return None


def _call_kwargs(model: nn.Module, call_kwargs: dict[str, Any]) -> dict[str, Any]:
  """Adds ``train=False`` when ``__call__`` takes ``train`` and it was not given."""
  kwargs = dict(call_kwargs)
  try:
    params = pyinspect.signature(type(model).__call__).parameters
  except (TypeError, ValueError):
    params = {}
  if "train" in params and "train" not in kwargs:
    kwargs["train"] = False
  return kwargs


def _input(input_shape: Sequence[int], dtype: Any) -> jax.ShapeDtypeStruct:
  if not all(isinstance(n, int) and n > 0 for n in input_shape):
    raise ValueError(
        f"input_shape must be positive ints including the batch axis, e.g. (1, 224, 224, 3), "
        f"got {tuple(input_shape)!r}")
  return jax.ShapeDtypeStruct(tuple(input_shape), jnp.dtype(dtype))


def trace_layers(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: Any = jnp.float32,
    **call_kwargs: Any,
) -> tuple[list[LayerInfo], Any]:
  """Runs the model abstractly and records every module call.

  Args:
    model: a linen module.
    input_shape: full input shape, batch axis included, e.g. ``(1, 224, 224, 3)``.
    dtype: input dtype (``jnp.int32`` for token ids).
    **call_kwargs: passed to ``__call__``; ``train=False`` is added when the
      module takes ``train`` and it is not given.

  Returns:
    ``(rows, variables)``: one ``LayerInfo`` per module call in call order,
    and the variables as ``jax.ShapeDtypeStruct`` leaves.
  """
  x = _input(input_shape, dtype)
  kwargs = _call_kwargs(model, call_kwargs)
  rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = jax.eval_shape(lambda x: model.init(rngs, x, **kwargs), x)
  rows: list[LayerInfo] = []

  def interceptor(next_fun, args, kw, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kw)
    slot = len(rows)
    rows.append(None)  # Reserved at entry: rows are listed parents first.
    out = next_fun(*args, **kw)
    module = context.module
    own = module.variables.get("params", {}) if module.scope is not None else {}
    kernel = own.get("kernel") if hasattr(own, "get") else None
    first = _first_array(out)
    macs = 0
    if kernel is not None and hasattr(kernel, "shape") and first is not None:
      macs = _kernel_macs(tuple(kernel.shape), first)
    rows[slot] = LayerInfo(
        path="/".join(str(p) for p in module.path),
        kind=type(module).__name__,
        output_shape=tuple(first.shape) if first is not None else (),
        params=count_params(own),
        macs=macs)
    return out

  def forward(variables, x):
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x, rngs={"dropout": jax.random.key(1)},
                         mutable=True, **kwargs)

  jax.eval_shape(forward, variables, x)
  return rows, variables


def count_macs(model: nn.Module, input_shape: Sequence[int], *, dtype: Any = jnp.float32,
               **call_kwargs: Any) -> int:
  """Total multiply-accumulates of one forward pass on an input of ``input_shape``.

  ``input_shape`` includes the batch axis: ``(1, 224, 224, 3)`` gives the
  per-image count (1.82e9 for ResNet-18). Every convolution and dense layer
  is counted each time it is called.
  """
  rows, _ = trace_layers(model, input_shape, dtype=dtype, **call_kwargs)
  return sum(r.macs for r in rows)


def _human(n: int) -> str:
  for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
    if n >= scale:
      return f"{n / scale:.2f}{unit}"
  return str(n)


def summary(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    dtype: Any = jnp.float32,
    depth: int | None = None,
    print_fn: Callable[[str], Any] | None = print,
    **call_kwargs: Any,
) -> str:
  """Prints and returns a table of the model's layers: output shape, parameters, MACs.

  Example::

    >>> from cnnjax import models
    >>> from cnnjax.inspect.summary import summary
    >>> table = summary(models.create('lenet5'), (1, 32, 32, 3), print_fn=None)
    >>> 'Total params: 62,006' in table
    True

  Args:
    model: a linen module.
    input_shape: full input shape, batch axis included (use batch 1 for
      per-example MACs).
    dtype: input dtype.
    depth: show modules down to this nesting depth (1: the model's direct
      submodules); None shows all. Totals always cover everything.
    print_fn: called with the table; None to only return it.
    **call_kwargs: passed to ``__call__`` (``train=False`` by default).

  Returns:
    The table as a string, modules in call order, parents before their
    submodules. Each row's params and MACs include its submodules'.
  """
  rows, variables = trace_layers(model, input_shape, dtype=dtype, **call_kwargs)
  shown = []
  for row in rows:
    level = 0 if not row.path else row.path.count("/") + 1
    if level == 0 or (depth is not None and level > depth):
      continue
    prefix = row.path + "/"
    macs = row.macs + sum(r.macs for r in rows if r.path.startswith(prefix))
    # (A module called twice shows both calls' submodule MACs on each row.)
    shown.append((("  " * (level - 1)) + row.path.split("/")[-1], row.kind,
                  str(row.output_shape), f"{row.params:,}", f"{macs:,}"))
  header = ("layer", "type", "output shape", "params", "MACs")
  widths = [max(len(h), *(len(r[i]) for r in shown)) if shown else len(h)
            for i, h in enumerate(header)]
  line = lambda cells: "  ".join(  # noqa: E731
      c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
  rule = "-" * len(line(header))
  total_params = count_params(variables)
  other = {k: count_params(v) for k, v in variables.items() if k != "params"}
  total_macs = sum(r.macs for r in rows)
  out_shape = next((r.output_shape for r in reversed(rows) if r.path == ""), ())
  lines = [f"{type(model).__name__} on input {tuple(input_shape)} -> {out_shape}", rule,
           line(header), rule, *(line(r) for r in shown), rule,
           f"Total params: {total_params:,}"]
  for name, n in other.items():
    lines.append(f"Non-trainable ({name}): {n:,}")
  lines.append(f"Total MACs: {total_macs:,} ({_human(total_macs)}; FLOPs ~ {_human(2 * total_macs)})")
  table = "\n".join(lines)
  if print_fn is not None:
    print_fn(table)
  return table
