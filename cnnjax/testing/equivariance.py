"""Assertions that a function commutes with (or ignores) shifts of its input.

A function ``f`` of feature maps ``(N, *spatial, C)`` is shift-equivariant
with stride ``s`` if shifting the input by ``t`` (a multiple of ``s``) shifts
the output by ``t / s``::

    f(shift(x, t)) == shift(f(x), t / s)

and shift-invariant if ``f(shift(x, t)) == f(x)``. Convolutions commute with
shifts; what breaks the identity is the border (zero padding) and the stride
(only multiples of it are allowed). Two readings of "shift":

* ``mode='circular'``: ``shift`` is ``jnp.roll``. Exact for circular padding
  ('CIRCULAR') when every shifted spatial size is divisible by the stride.
* ``mode='interior'``: for zero ('SAME') or no ('VALID') padding. The input is
  rolled, and only the output positions that see neither the border nor the
  seam where the roll wraps are compared (see ``assert_shift_equivariant``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

Shift = int | Sequence[int]
Margin = int | Sequence[int] | Sequence[tuple[int, int]] | None


def _axes(x: Any, axes: int | Sequence[int] | None) -> tuple[int, ...]:
  __tracebackhide__ = True
  if not hasattr(x, "ndim") or not hasattr(x, "shape"):
    raise TypeError(f"x must be an array (N, *spatial, C), got {type(x).__name__}")
  if axes is None:
    if x.ndim < 3:
      raise ValueError(
          f"x must be (N, *spatial, C) with at least one spatial axis (channels "
          f"last), got shape {tuple(x.shape)}; pass axes= for another layout")
    return tuple(range(1, x.ndim - 1))
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  norm = tuple(a % x.ndim if -x.ndim <= a < x.ndim else None for a in axes)
  if None in norm or len(set(norm)) != len(norm):
    raise ValueError(f"axes must be distinct axes of x (rank {x.ndim}), got {axes!r}")
  return norm


def _per_axis(value: Shift, n: int, name: str) -> tuple[int, ...]:
  __tracebackhide__ = True
  if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
    return (int(value),) * n
  value = tuple(value)
  if len(value) != n or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
    raise ValueError(f"{name} must be an int or a sequence of {n} ints (one per shifted axis), got {value!r}")
  return tuple(int(v) for v in value)


def _margins(margin: Margin, n: int) -> tuple[tuple[int, int], ...]:
  __tracebackhide__ = True
  if isinstance(margin, (int, np.integer)):
    pairs = ((int(margin), int(margin)),) * n
  else:
    items = tuple(margin)
    if len(items) != n:
      raise ValueError(f"margin must be an int or one entry per axis ({n}), got {margin!r}")
    pairs = tuple((int(m), int(m)) if isinstance(m, (int, np.integer)) else tuple(int(v) for v in m) for m in items)
  if any(len(p) != 2 or min(p) < 0 for p in pairs):
    raise ValueError(f"margin entries must be non-negative ints or (lo, hi) pairs, got {margin!r}")
  return pairs


def _output(fn: Callable, x: Any, what: str) -> np.ndarray:
  __tracebackhide__ = True
  y = fn(x)
  if not hasattr(y, "shape"):
    raise TypeError(f"fn must return an array, got {type(y).__name__} for {what}")
  return np.asarray(y)


def _check_output_axes(y: np.ndarray, x: Any, axes: tuple[int, ...]) -> None:
  __tracebackhide__ = True
  if y.ndim != x.ndim:
    raise ValueError(
        f"fn's output has shape {y.shape} (rank {y.ndim}) but the input has rank "
        f"{x.ndim} {tuple(x.shape)}: equivariance compares the output on the same "
        f"spatial axes {axes}; for an output that has no spatial axes (a global "
        f"pool, a classifier head) use assert_shift_invariant")


def _tolerance(reference: np.ndarray, atol: float | None, rtol: float) -> tuple[float, str]:
  """The absolute tolerance, and how to print it.

  ``None`` scales it with the reference: a sum of many float32 terms is off by
  a multiple of eps32 times the magnitude of the sum, so a fixed absolute
  tolerance is too tight for logits of hundreds and too loose for outputs
  near 1e-3. ``rtol * max|reference|`` also covers elements that cancel to
  near zero, where a purely elementwise ``rtol`` would demand exactness.
  """
  if atol is not None:
    return float(atol), f"atol={float(atol):g}"
  finite = np.abs(reference[np.isfinite(reference)])
  scale = float(finite.max()) if finite.size else 0.0
  value = rtol * scale
  return value, f"atol={value:.3g} (rtol x max|reference| = {rtol:g} x {scale:.3g})"


def _report(
    title: str, a: np.ndarray, b: np.ndarray, atol: float | None, rtol: float,
    offset: Sequence[int] = (), *, labels: tuple[str, str] = ("f(shift(x))", "shift(f(x))"),
) -> str | None:
  """``None`` if ``a`` and ``b`` agree within tolerance, else a message naming the worst element.

  ``b`` is the reference side; ``labels`` name ``a`` and ``b`` in the message.
  """
  if a.shape != b.shape:
    return f"{title}: output shapes differ, {a.shape} for the shifted input vs {b.shape}"
  a64, b64 = a.astype(np.float64), b.astype(np.float64)
  atol, atol_text = _tolerance(b64, atol, rtol)
  err = np.abs(a64 - b64)
  bound = atol + rtol * np.abs(b64)
  nan_mismatch = np.isnan(a64) != np.isnan(b64)
  bad = (err > bound) | nan_mismatch
  bad &= ~(np.isnan(a64) & np.isnan(b64))
  if not bad.any():
    return None
  finite = np.where(np.isnan(err), np.inf, err)
  worst = np.unravel_index(int(np.argmax(finite)), err.shape)
  index = tuple(int(i) + (offset[k] if k < len(offset) else 0) for k, i in enumerate(worst))
  return (f"{title}\n  max abs error {float(finite[worst]):.3g} at output index {index}: "
          f"{labels[0]} = {float(a64[worst]):.6g}, {labels[1]} = {float(b64[worst]):.6g}\n"
          f"  {int(bad.sum())} of {bad.size} compared elements exceed {atol_text}, rtol={rtol:g}")


def infer_margin(fn: Callable, x: Any, axes: Sequence[int] | None = None, stride: Shift = 1) -> tuple[tuple[int, int], ...]:
  """Output positions, per axis and side, whose receptive field may reach the border.

  Found with a NaN probe: a NaN is placed at the centre of ``x`` (every
  example and channel) and the output positions it reaches give the extent of
  ``fn``'s receptive field, rounded up to whole strides. Output ``i`` sees
  input ``i * stride + j`` for ``j`` in that extent; it is counted in the
  margin if any of those inputs lies outside ``x``. This holds for
  convolutions, pooling, blur and pointwise nonlinearities (NaN propagates
  through ``+``, ``*``, ``max``); functions that hide NaNs (``jnp.where``,
  ``nan``-aware reductions, clipping) need an explicit ``margin``.

  Args:
    fn: maps ``x`` to an array with the same axes.
    x: ``(N, *spatial, C)`` input.
    axes: the spatial axes; default ``1 .. x.ndim - 2``.
    stride: the output's stride on each axis (input units per output unit).

  Returns:
    One ``(lo, hi)`` pair of output positions per axis.

  Raises:
    ValueError: if the NaN reaches an end of the output, i.e. the receptive
      field covers half the input: then no interior is left to compare.
  """
  axes = _axes(x, axes)
  stride = _per_axis(stride, len(axes), "stride")
  x = np.array(x, copy=True)
  centre = [n // 2 for n in x.shape]
  index = [slice(None)] * x.ndim
  for a in axes:
    index[a] = centre[a]
  x[tuple(index)] = np.nan
  y = _output(fn, x, "the NaN probe")
  _check_output_axes(y, x, axes)
  reached = np.isnan(y)
  if not reached.any():
    raise ValueError(
        "cannot infer the margin: a NaN at the centre of x reached no output of "
        "fn (does fn mask NaNs?); pass margin= explicitly")
  pairs = []
  for a, s in zip(axes, stride):
    other = tuple(b for b in range(y.ndim) if b != a)
    hit = np.flatnonzero(reached.any(axis=other))
    first, last, out = int(hit[0]), int(hit[-1]), y.shape[a]
    if first == 0 or last == out - 1:
      raise ValueError(
          f"cannot infer the margin on axis {a}: the receptive field of fn covers "
          f"half the input ({x.shape[a]} on axis {a}), so every output position "
          f"sees the border; use a larger input or pass margin= explicitly")
    p = centre[a]
    # Output i sees inputs i*s - left .. i*s + right; the probe bounds them up to
    # the stride, rounded up so that the margin is never too small.
    left = last * s - p + s - 1
    right = p - first * s + s - 1
    lo = -(-left // s)
    n = x.shape[a]
    hi = max(0, out - ((n - 1 - right) // s + 1))
    pairs.append((max(0, lo), hi))
  return tuple(pairs)


def assert_shift_equivariant(
    fn: Callable[[Any], Any],
    x: Any,
    shift: Shift,
    *,
    axes: int | Sequence[int] | None = None,
    mode: str = "circular",
    stride: Shift = 1,
    atol: float | None = None,
    rtol: float = 1e-5,
    margin: Margin = None,
) -> None:
  """Asserts ``fn(shift(x, t)) == shift(fn(x), t / stride)``.

  Args:
    fn: maps ``x`` to an array with the same axes, e.g. a convolution, a
      layer's ``apply`` or a feature extractor: ``(N, *spatial, C) -> (N,
      *spatial', C')`` with ``spatial' = spatial / stride``.
    x: the input, ``(N, *spatial, C)``; a numpy or jax array.
    shift: the shift ``t``, an int (the same on every axis) or one int per axis
      of ``axes``. Negative shifts move content towards index 0.
    axes: the spatial axes to shift; default all of them, ``1 .. x.ndim - 2``.
    mode: ``'circular'``: ``shift`` is ``jnp.roll`` and every output position is
      compared. ``'interior'``: for zero or no padding; ``x`` is rolled, and
      only the output positions whose receptive field reaches neither the
      border nor the seam where the roll wraps are compared: on a shifted axis
      with output size ``m`` and output shift ``u = t / stride``, the positions
      ``max(u, 0) + lo <= i < m + min(u, 0) - hi``, where ``(lo, hi)`` is the
      margin.
    stride: the total stride of ``fn`` per axis; ``t`` must be a multiple of it.
    atol, rtol: the tolerance, ``|a - b| <= atol + rtol * |b|`` elementwise,
      ``b`` being the unshifted side. ``atol=None`` (the default) means
      ``rtol * max|b|``: float32 rounding grows with the magnitude of the
      output and the number of terms summed, so a tolerance relative to the
      output's scale holds for logits of 1 and of 1,000 alike. The default
      ``rtol=1e-5`` is ~80 float32 eps, room for the reordered sums of a few
      convolution layers; deep networks need more (pass ``rtol``).
    margin: ``'interior'`` only: output positions to drop at each end of each
      shifted axis, as an int, one int per axis, or ``(lo, hi)`` pairs. If
      ``None``, inferred by ``infer_margin`` (a NaN probe of the receptive
      field), which is conservative for convolution, pooling and pointwise
      nonlinearities. Unshifted axes are compared in full.

  Raises:
    AssertionError: the two sides differ; the message gives the largest
      absolute error, its output index, the shift and the mode.
    ValueError: a shift that is not a multiple of the stride, an unknown mode,
      an output without the spatial axes, or an empty interior.
  """
  __tracebackhide__ = True  # pytest shows the caller's line, not these internals.
  axes = _axes(x, axes)
  shift = _per_axis(shift, len(axes), "shift")
  stride = _per_axis(stride, len(axes), "stride")
  if mode not in ("circular", "interior"):
    raise ValueError(f"mode must be 'circular' or 'interior', got {mode!r}")
  if any(s < 1 for s in stride):
    raise ValueError(f"stride must be positive, got {stride}")
  for a, t, s in zip(axes, shift, stride):
    if t % s:
      raise ValueError(
          f"shift {t} on axis {a} is not a multiple of the stride {s}: a strided "
          f"function can only commute with shifts by whole output positions (the "
          f"output would move by {t}/{s}); use a shift in {{..., {-s}, 0, {s}, "
          f"{2 * s}, ...}}, or test invariance after a global pool instead")
  out_shift = tuple(t // s for t, s in zip(shift, stride))
  shifted = jnp.roll(jnp.asarray(x), shift, axis=axes)
  a = _output(fn, shifted, "the shifted input")
  b = _output(fn, jnp.asarray(x), "the input")
  _check_output_axes(b, x, axes)
  b = np.roll(b, out_shift, axis=axes)
  title = (f"fn is not shift-equivariant (mode={mode!r}): shift {shift} on axes "
           f"{axes}, stride {stride}, output shift {out_shift}")
  if a.shape != b.shape:
    raise AssertionError(f"{title}: output shapes differ, {a.shape} for the shifted input vs {b.shape}")

  offset = [0] * a.ndim
  if mode == "interior":
    pairs = _margins(margin, len(axes)) if margin is not None else infer_margin(fn, x, axes, stride)
    index = [slice(None)] * a.ndim
    for ax, u, (lo, hi) in zip(axes, out_shift, pairs):
      if u == 0 and shift[axes.index(ax)] == 0:
        continue
      start, stop = max(u, 0) + lo, a.shape[ax] + min(u, 0) - hi
      if start >= stop:
        raise ValueError(
            f"no interior left to compare on axis {ax}: output size {a.shape[ax]}, "
            f"output shift {u}, margin {(lo, hi)}; use a larger input or a smaller shift")
      index[ax] = slice(start, stop)
      offset[ax] = start
    a, b = a[tuple(index)], b[tuple(index)]
    title += f", compared region {tuple(index[ax] for ax in axes)} (margin {pairs})"
  message = _report(title, a, b, atol, rtol, offset)
  if message is not None:
    hint = ""
    if mode == "circular" and any(x.shape[ax] % s for ax, s in zip(axes, stride)):
      hint = (f"\n  note: spatial sizes {tuple(x.shape[ax] for ax in axes)} are not all "
              f"divisible by the stride {stride}, which breaks circular equivariance")
    raise AssertionError(message + hint)


def assert_shift_invariant(
    fn: Callable[[Any], Any],
    x: Any,
    shift: Shift,
    *,
    axes: int | Sequence[int] | None = None,
    atol: float | None = None,
    rtol: float = 1e-5,
) -> None:
  """Asserts ``fn(roll(x, t)) == fn(x)``: the output ignores circular shifts.

  For functions that end in a global pool or a classifier head.

  Args:
    fn: maps ``x`` to any array, e.g. ``(N, *spatial, C) -> (N, K)``.
    x: the input, ``(N, *spatial, C)``.
    shift: an int (the same on every axis) or one int per axis of ``axes``.
    axes: the axes to roll; default the spatial axes ``1 .. x.ndim - 2``.
    atol, rtol: the tolerance, as ``assert_shift_equivariant``'s (``atol=None``:
      ``rtol * max|b|``, ``b`` being the unshifted side).

  Raises:
    AssertionError: the outputs differ; the message gives the largest absolute
      error and where it occurs.
  """
  __tracebackhide__ = True  # pytest shows the caller's line, not these internals.
  axes = _axes(x, axes)
  shift = _per_axis(shift, len(axes), "shift")
  a = _output(fn, jnp.roll(jnp.asarray(x), shift, axis=axes), "the shifted input")
  b = _output(fn, jnp.asarray(x), "the input")
  message = _report(f"fn is not shift-invariant: circular shift {shift} on axes {axes}", a, b, atol, rtol,
                    labels=("f(shift(x))", "f(x)"))
  if message is not None:
    raise AssertionError(message)
