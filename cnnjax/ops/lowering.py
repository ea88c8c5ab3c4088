"""Policy: which formulation ``ops.conv(..., lowering='auto')`` computes a convolution with.

``ops.conv`` computes one function whatever its ``lowering``; this module only
decides, per backend and shape, which code computes it, from measurements
(``benchmarks/conv_ops.py``, figures in ``BENCHMARKS.md``). Keeping the policy
here, apart from the formulations in ``ops/conv.py`` and ``ops/conv_fast.py``,
means a new measurement changes this file only.

* ``choose_lowering``: the per-shape rule ``'auto'`` follows.
* ``default_lowering``: a context in which ``'auto'`` means another lowering
  (e.g. ``'lax'`` everywhere, to measure a model against the rule).
* ``phase_chunk``: the chunk size of a ``'subpixel'`` phase convolution;
  ``exceeds_kernel_reach``: when a CPU lowering pads its input beforehand.
* The thresholds (``CHUNK_BATCH``, ``CHUNK_MIN_POSITIONS``,
  ``PER_GROUP_MAX_GROUPS``, ``PHASE_MIN_CHUNK``, ``PHASE_CHUNK``) are module constants, read
  at trace time.

Off CPU (GPU, TPU) the rule is always ``'lax'``: cuDNN and the TPU
convolution emitters are the fast path there, and none of the CPU
formulations has been measured faster on those backends.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

from cnnjax.ops import arithmetic
from cnnjax.ops.arithmetic import PaddingLike
from cnnjax.ops.validation import as_tuple

IntSeq = int | Sequence[int] | None

#: Values of ``conv``'s ``lowering`` argument.
LOWERINGS = ("auto", "lax", "chunked", "matmul", "subpixel", "taps", "per_group")

#: Examples per chunk of the ``'chunked'`` lowering.
CHUNK_BATCH = 16
#: ``choose_lowering`` chunks a convolution only if it has at least this many
#: output positions per example (smaller maps, e.g. ResNet's last 4x4 stage,
#: are faster whole).
CHUNK_MIN_POSITIONS = 64
#: The fewest examples per chunk of a ``'subpixel'`` phase convolution
#: (``phase_chunk``).
PHASE_MIN_CHUNK = 8
#: When set, ``phase_chunk`` returns it whatever the batch: one chunk size for
#: every phase convolution, to measure the rule against
#: (``benchmarks/conv_ops.py --phase-chunk``).
PHASE_CHUNK: int | None = None
#: ``choose_lowering`` computes a grouped (not depthwise) convolution group by
#: group only up to this many groups: each group is its own convolution in the
#: compiled program, and 8 is the largest count measured faster.
PER_GROUP_MAX_GROUPS = 8

_DEFAULT_LOWERING: contextvars.ContextVar[str] = contextvars.ContextVar(
    "cnnjax_conv_lowering", default="auto")


def check_lowering(lowering: Any) -> str:
  """Returns ``lowering`` if it is one of ``LOWERINGS``, else raises ``ValueError``."""
  if lowering not in LOWERINGS:
    raise ValueError(f"lowering must be one of {LOWERINGS}, got {lowering!r}")
  return lowering


def current_default() -> str:
  """The lowering ``'auto'`` stands for here: ``'auto'`` unless ``default_lowering`` set one."""
  return _DEFAULT_LOWERING.get()


@contextlib.contextmanager
def default_lowering(lowering: str) -> Iterator[None]:
  """Within the block, ``conv(..., lowering='auto')`` means ``lowering``.

  For switching the convolutions of a whole model at trace time without
  rebuilding it, e.g. to measure one lowering against another::

    with ops.default_lowering('lax'):
      step = jax.jit(train_step).lower(state, batch).compile()

  ``'auto'`` restores ``choose_lowering``. Explicit ``lowering='lax'`` (or
  any other) arguments are not affected. The setting is read when a function
  is traced, so it applies to what is traced (or retraced) inside the block.
  """
  token = _DEFAULT_LOWERING.set(check_lowering(lowering))
  try:
    yield
  finally:
    _DEFAULT_LOWERING.reset(token)


def phase_chunk(batch: int, chunk: int | None = None) -> int:
  """Examples per chunk of each output phase's convolution in the ``'subpixel'`` lowering.

  A quarter of the batch, at least ``PHASE_MIN_CHUNK`` and at most ``chunk``
  (default ``CHUNK_BATCH``): at batch 32 chunks of 8 computed the 4x4
  stride-2 transposed convolutions of ``benchmarks/conv_ops.py`` 1.4-1.9x
  faster (forward plus backward) than chunks of 16, and at batches 64 and 128
  chunks of 16 were the fastest or within 10 % of it (``BENCHMARKS.md``,
  section 18). ``PHASE_CHUNK``, when set, overrides the rule. Read at trace
  time, like ``CHUNK_BATCH``.
  """
  if PHASE_CHUNK is not None:
    return PHASE_CHUNK
  chunk = CHUNK_BATCH if chunk is None else chunk
  return max(PHASE_MIN_CHUNK, min(chunk, batch // 4))


def exceeds_kernel_reach(w_shape: Sequence[int], pads: Sequence[tuple[int, int]],
                         rhs_dilation: Sequence[int]) -> bool:
  """Whether zero padding on some axis is wider than the dilated kernel's reach.

  That is ``lo + hi > (k - 1) * dilation``: the output is longer than the
  input on that axis, and every output at its ends sees padding only.
  XLA:CPU computes the kernel gradient of such a convolution 8-80x slower
  than of the same convolution on an input padded beforehand (``BENCHMARKS.md``,
  section 18), so the CPU lowerings pad such inputs explicitly.
  """
  kernel = tuple(w_shape[:len(pads)])
  return any(lo + hi > (k - 1) * d for (lo, hi), k, d in zip(pads, kernel, rhs_dilation))


def choose_lowering(
    x_shape: Sequence[int],
    w_shape: Sequence[int],
    *,
    strides: IntSeq = None,
    padding: PaddingLike = "VALID",
    lhs_dilation: IntSeq = None,
    rhs_dilation: IntSeq = None,
    feature_group_count: int = 1,
    backend: str | None = None,
) -> str:
  """The lowering ``conv(..., lowering='auto')`` uses for this shape and backend.

  The rule follows the sweep of ``benchmarks/conv_ops.py`` (forward plus
  backward, float32; the numbers are in ``BENCHMARKS.md``):

  * on any backend but CPU (GPU, TPU), always ``'lax'``;
  * on CPU, for an input-dilated (transposed) convolution, ``'subpixel'``:
    one ordinary convolution of the undilated input per output phase
    (``ops.conv_fast.conv_subpixel``), 4-25x faster forward plus backward
    than XLA:CPU's ``lhs_dilation`` convolution and 3.7-5.5x faster than
    im2col over the dilated input; each phase is a ``lax`` convolution in
    chunks of ``phase_chunk(batch)`` examples (1.0-3.0x faster again than
    im2col per phase, forward plus backward, on two days), or a matrix
    product when its kernel is 1x1. A transposed convolution that also has
    window strides is ``'matmul'``;
  * on CPU, for a depthwise convolution (one input channel per group),
    ``'taps'``: one shifted multiply-add per kernel tap
    (``ops.conv_fast.conv_depthwise_taps``), its kernel gradient one
    reduction for all taps; 2.4-3.9x faster than im2col and 3-20x faster
    than XLA:CPU's grouped convolution at every measured shape before that
    reduction, which made it another 1.3-4.6x faster;
  * on CPU, for other grouped convolutions of at most
    ``PER_GROUP_MAX_GROUPS`` groups, ``'per_group'``: one ordinary
    convolution per group (``ops.conv_fast.conv_per_group``), whose
    gradients are ungrouped convolutions (3.9x faster than im2col and 80x
    faster than XLA:CPU's grouped convolution on 8 groups); with more groups
    (ResNeXt's 32) one convolution per group multiplies the compile time, so
    ``'matmul'`` (one grouped product over im2col patches);
  * on CPU, ``'matmul'`` (``conv_matmul``: im2col and one matrix product)
    for 1x1 convolutions, which are matrix products;
  * on CPU, ``'chunked'`` (``lax`` on chunks of ``CHUNK_BATCH`` examples) for
    a batch larger than ``CHUNK_BATCH`` with at least ``CHUNK_MIN_POSITIONS``
    output positions per example: XLA:CPU's kernel gradient, a contraction
    of the long ``N * H * W`` axis into a small kernel, slows down
    super-linearly with the batch (forward and backward at batch 128:
    LeNet-5's first layer 9.8 ms whole, 1.9 ms chunked; ResNet-18's 3x3
    64-channel layer 278 ms and 140 ms);
  * ``'lax'`` otherwise (small batches, small maps, narrow grouped
    convolutions).

  Args:
    x_shape: input shape ``(N, *spatial, C_in)``.
    w_shape: kernel shape ``(*spatial_k, C_in / groups, C_out)``.
    strides, padding, lhs_dilation, rhs_dilation, feature_group_count: as
      ``conv``'s.
    backend: ``'cpu'``, ``'gpu'``, ``'tpu'``; default ``jax.default_backend()``.

  Returns:
    One of ``LOWERINGS`` other than ``'auto'``.
  """
  backend = jax.default_backend() if backend is None else backend
  if backend != "cpu":
    return "lax"
  rank = len(w_shape) - 2
  kernel = tuple(w_shape[:-2])
  if any(d != 1 for d in as_tuple(lhs_dilation, rank, "lhs_dilation")):
    if all(s == 1 for s in as_tuple(strides, rank, "strides")):
      return "subpixel"
    return "matmul"
  if feature_group_count != 1:
    if w_shape[-2] == 1:
      return "taps"
    return "per_group" if feature_group_count <= PER_GROUP_MAX_GROUPS else "matmul"
  if all(k == 1 for k in kernel):
    return "matmul"
  out = arithmetic.conv_output_shape(
      tuple(x_shape[1:-1]), kernel, strides, padding, rhs_dilation, lhs_dilation)
  if x_shape[0] > CHUNK_BATCH and int(np.prod(out)) >= CHUNK_MIN_POSITIONS:
    return "chunked"
  return "lax"


__all__ = [
    "CHUNK_BATCH",
    "CHUNK_MIN_POSITIONS",
    "PER_GROUP_MAX_GROUPS",
    "PHASE_CHUNK",
    "PHASE_MIN_CHUNK",
    "LOWERINGS",
    "check_lowering",
    "choose_lowering",
    "current_default",
    "default_lowering",
    "exceeds_kernel_reach",
    "phase_chunk",
]
