"""Convolution formulations for the shapes ``lax.conv_general_dilated`` is slow on (on CPU).

Each function computes exactly ``ops.conv``'s function for the arguments it
accepts, from ordinary operations whose gradients are fast: no input dilation
(``lhs_dilation``) anywhere in the forward pass or in what ``jax.grad``
derives from it, and no grouped ``conv_general_dilated``.

* ``conv_subpixel``: a transposed (input-dilated) convolution as ``s**rank``
  ordinary stride-1 convolutions of the undilated input, one per output phase
  (sub-pixel, or phase, decomposition), interleaved. The zeros of the dilated
  input are never multiplied.
* ``conv_depthwise_taps``: a depthwise convolution (one group per input
  channel) as ``prod(kernel)`` shifted multiply-adds, one per kernel tap,
  which XLA fuses into one elementwise pass over the input; a primitive of
  its own whose kernel gradient is one reduction for all taps.
* ``conv_per_group``: a grouped convolution as one ordinary convolution per
  group, concatenated along channels.

They take the arguments already normalised by ``ops.conv`` (tuples of one int
per spatial axis, explicit ``(lo, hi)`` zero pads), and ``inner``, the function
that computes each ordinary convolution they are made of (``ops.conv`` passes
``lax`` on the whole batch or on chunks, following ``ops.choose_lowering``;
for ``conv_subpixel``, ``lax`` on chunks of ``ops.lowering.phase_chunk``
examples, or a matrix product when a phase's kernel is 1x1).
Use them through ``ops.conv(..., lowering='subpixel' | 'taps' | 'per_group')``;
``ops.lowering.choose_lowering`` says when each is chosen and why.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

Array = jax.Array
Pads = Sequence[tuple[int, int]]
#: ``inner(x, w, pads, rhs_dilation, feature_group_count) -> y``: an ordinary
#: (stride 1 unless stated, undilated input) convolution, ``x`` ``(N, *spatial, C)``.
InnerConv = Callable[..., Array]

#: ``conv_depthwise_taps`` pads its input once, into a buffer of its own, when
#: that buffer is smaller than this many bytes, and otherwise pads each tap's
#: window as it reads it. glibc maps an allocation of 32 MiB or more afresh on
#: every call and page-faults it in, which made a layer whose padded input
#: reached that size 2.3x slower per element (a 64 x 16 x 16 x 512 float32
#: buffer against 62 x 16 x 16 x 512); reading each tap's window with its zeros
#: costs 1.2-2.2x in the forward pass below that size (BENCHMARKS.md, section 25).
PAD_PER_TAP_BYTES = 32 * 2**20


def _axis_phases(n: int, k: int, s: int, d: int, lo: int, hi: int):
  """Per output phase of one axis: the kernel taps it uses and where they read.

  The input dilated by ``s`` and padded by ``(lo, hi)`` is
  ``z[j] = x[(j - lo) / s]`` where that is a whole index in ``[0, n)``, else 0,
  and the stride-1 output is ``y[i] = sum_t w[t] * z[i + t * d]``. For the
  outputs ``i = s * q + r`` of phase ``r`` only the taps ``t`` with
  ``(r + t * d - lo) % s == 0`` meet a non-zero; they form the progression
  ``t0, t0 + p, ...`` (``p = s / gcd(d, s)``) and read
  ``x[q + base + j * dd]`` (``dd = d / gcd(d, s)``).

  Returns ``(out_len, q_len, phases)`` with ``phases[r] = None`` (no tap) or
  ``(t0, p, taps, dd, pad_lo, pad_hi)``, the pads of ``x`` for a stride-1
  convolution of the sub-kernel ``w[t0::p]`` with dilation ``dd`` giving
  ``q_len`` outputs.
  """
  out_len = (n - 1) * s + 1 + lo + hi - (k - 1) * d
  q_len = -(-out_len // s)
  g = math.gcd(d, s)
  p, dd = s // g, d // g
  phases = []
  for r in range(s):
    t0 = next((t for t in range(min(k, p)) if (r + t * d - lo) % s == 0), None)
    if t0 is None:
      phases.append(None)
      continue
    taps = len(range(t0, k, p))
    base = (r + t0 * d - lo) // s
    pad_lo = -base
    pad_hi = (q_len - 1) + base + (taps - 1) * dd - (n - 1)
    phases.append((t0, p, taps, dd, pad_lo, pad_hi))
  return out_len, q_len, phases


def conv_subpixel(
    x: Array,
    w: Array,
    *,
    pads: Pads,
    lhs_dilation: Sequence[int],
    rhs_dilation: Sequence[int],
    feature_group_count: int,
    inner: InnerConv,
) -> Array:
  """Input-dilated, stride-1 convolution as a sum over output phases of ordinary ones.

  Args:
    x: ``(N, *spatial, C_in)``.
    w: ``(*kernel, C_in / groups, C_out)``.
    pads: zero pads ``(lo, hi)`` of the dilated input, one per spatial axis
      (negative crops).
    lhs_dilation, rhs_dilation: one int per spatial axis.
    feature_group_count: passed to every phase's convolution.
    inner: computes each phase's stride-1 convolution of the undilated input.

  Returns:
    ``(N, *spatial_out, C_out)``, equal to ``lax.conv_general_dilated`` with
    ``window_strides=1`` and these pads and dilations. Phases that no kernel
    tap reaches (possible when ``rhs_dilation`` shares a factor with
    ``lhs_dilation``) are zeros.
  """
  rank = len(lhs_dilation)
  kernel = w.shape[:rank]
  axes = [_axis_phases(x.shape[1 + a], kernel[a], lhs_dilation[a], rhs_dilation[a], *pads[a])
          for a in range(rank)]
  q_shape = tuple(q for _, q, _ in axes)
  n, c_out = x.shape[0], w.shape[-1]
  dtype = jnp.result_type(x, w)
  outs = []
  for phase in itertools.product(*(range(s) for s in lhs_dilation)):
    per_axis = [axes[a][2][phase[a]] for a in range(rank)]
    if any(p is None for p in per_axis):
      outs.append(None)
      continue
    index = tuple(slice(t0, None, p) for t0, p, *_ in per_axis)
    sub = w[index]
    y = inner(x, sub, tuple((lo, hi) for *_, lo, hi in per_axis),
              tuple(dd for *_, dd, _, _ in per_axis), feature_group_count)
    outs.append(y)
  template = next((y for y in outs if y is not None), None)
  if template is None:
    out_shape = tuple(o for o, _, _ in axes)
    return jnp.zeros((n, *out_shape, c_out), dtype)
  outs = [jnp.zeros_like(template) if y is None else y for y in outs]
  if len(outs) == 1:
    y = outs[0]
  else:
    # (S, N, *Q, C) with S = prod(s) phases in row-major order, to
    # (N, Q_1, s_1, ..., Q_r, s_r, C): output index q * s + r on each axis.
    y = jnp.stack(outs).reshape(*lhs_dilation, n, *q_shape, c_out)
    order = [rank]
    for a in range(rank):
      order += [rank + 1 + a, a]
    order.append(2 * rank + 1)
    y = y.transpose(order).reshape(n, *(q * s for q, s in zip(q_shape, lhs_dilation)), c_out)
  return y[(slice(None), *(slice(0, o) for o, _, _ in axes))]


def conv_depthwise_taps(
    x: Array,
    w: Array,
    *,
    strides: Sequence[int],
    pads: Pads,
    rhs_dilation: Sequence[int],
    precision: lax.PrecisionLike = None,
    preferred_element_type: jnp.dtype | None = None,
) -> Array:
  """Depthwise convolution (``groups == C_in``) as one shifted multiply-add per kernel tap.

  ``out[n, i, c * m + j] = sum_t x_pad[n, i * stride + t * dilation, c] * w[t, 0, c * m + j]``
  for a channel multiplier ``m = C_out / C_in``: a sum of ``prod(kernel)``
  strided slices of the padded input, each scaled per channel. No convolution
  primitive, in the forward pass or in any derivative:

  * the forward pass (and every tangent, ``jax.jvp``) is one fused
    elementwise pass over the input, padded once beforehand, or, when that
    padded copy would take ``PAD_PER_TAP_BYTES`` or more, each tap's window
    padded as it is read;
  * the input gradient is a sum of zero-padded products of the output
    gradient with each tap's weights, as ``jax.grad`` derives it;
  * the kernel gradient is **one** reduction with ``prod(kernel)`` outputs
    (a variadic ``lax.reduce`` over the output positions, then a small sum
    over the examples), which reads the input and the output gradient once
    for all taps, summing half-precision products in float32. ``jax.grad``
    of the plain tap sum gives one reduction per tap instead, which XLA:CPU
    runs as that many passes over both operands (BENCHMARKS.md, section 22).

  The tap sum is a primitive of its own (``cnnjax_depthwise_taps``),
  bilinear in the (padded) input and the kernel, so that its transpose with
  respect to the kernel can be that one reduction. It lowers to the same
  slices and products as the plain sum; forward mode, reverse mode of any
  order, ``vmap``, ``jit``, ``pmap`` and ``shard_map`` all apply.

  Args:
    x: ``(N, *spatial, C)``.
    w: ``(*kernel, 1, C * m)``.
    strides, rhs_dilation: one int per spatial axis.
    pads: zero pads ``(lo, hi)``, one per spatial axis.
    precision: unused by elementwise products; accepted for a uniform call.
    preferred_element_type: the dtype products are summed in and returned
      (default: the promoted dtype of ``x`` and ``w``), as for ``lax``.

  Returns:
    ``(N, *spatial_out, C * m)``.
  """
  del precision  # Elementwise products in the input dtype: no precision knob.
  rank = len(strides)
  kernel = w.shape[:rank]
  c = x.shape[-1]
  m = w.shape[-1] // c
  dtype = jnp.result_type(x, w) if preferred_element_type is None else preferred_element_type
  pads = tuple((int(lo), int(hi)) for lo, hi in pads)
  padded = (x.shape[0], *(x.shape[1 + a] + pads[a][0] + pads[a][1] for a in range(rank)), c)
  image = x.astype(dtype)
  if math.prod(padded) * jnp.dtype(dtype).itemsize < PAD_PER_TAP_BYTES:
    image = lax.pad(image, jnp.zeros((), dtype),
                    ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))
    pads = ((0, 0),) * rank  # Padded once: each tap reads a plain slice.
  out_shape = tuple(
      (padded[1 + a] - ((kernel[a] - 1) * rhs_dilation[a] + 1)) // strides[a] + 1
      for a in range(rank))
  weights = w.reshape(*kernel, c, m).astype(dtype)
  image, weights = _same_manual_axes(image, weights)
  return _depthwise_taps_p.bind(image, weights, strides=tuple(strides),
                                rhs_dilation=tuple(rhs_dilation), pads=pads, out_shape=out_shape)


# The depthwise tap sum as a primitive. Its operands: ``image``, the input
# ``(N, *spatial, C)``, padded beforehand or not, and ``weights``, ``(*kernel, C, m)``,
# both of the compute dtype; its result ``(N, *out_shape, C * m)``. Parameters:
# ``strides``, ``rhs_dilation`` and ``out_shape``, tuples of one int per spatial axis,
# and ``pads``, the zeros ``(lo, hi)`` per spatial axis that each tap adds to the
# window it reads (all zero when ``image`` was padded beforehand).


def _tap_window(n: int, out: int, start: int, stride: int) -> tuple[int, int, int, int]:
  """Along one axis of length ``n``, which of the ``out`` positions ``start + k * stride``
  are inside: ``(first, last, zeros_before, zeros_after)``, the input indices of the first
  and the last inside and how many fall outside before and after them; ``first > last``
  when none is inside."""
  k_first = 0 if start >= 0 else -(start // stride)  # ceil(-start / stride)
  k_last = min(out - 1, (n - 1 - start) // stride) if start <= n - 1 else -1
  if k_first > k_last:
    return 0, -1, out, 0
  return start + k_first * stride, start + k_last * stride, k_first, out - 1 - k_last


def _tap_slices(image: Array, kernel: Sequence[int], strides: Sequence[int],
                rhs_dilation: Sequence[int], pads: Sequence[tuple[int, int]],
                out_shape: Sequence[int]):
  """Yields ``(t, tap)`` per kernel tap ``t`` in row-major order: what tap ``t``
  multiplies, ``(N, *out_shape, C)``, the strided window of ``image`` zero-padded by
  ``pads``: a strided slice of ``image`` with the zeros the window reaches added (none
  when ``pads`` are zero)."""
  rank = len(kernel)
  for t in itertools.product(*(range(k) for k in kernel)):
    windows = [_tap_window(image.shape[1 + a], out_shape[a], t[a] * rhs_dilation[a] - pads[a][0],
                           strides[a]) for a in range(rank)]
    if any(first > last for first, last, _, _ in windows):  # Only zeros along some axis.
      yield t, jnp.zeros((image.shape[0], *out_shape, image.shape[-1]), image.dtype)
      continue
    tap = lax.slice(image, (0, *(first for first, _, _, _ in windows), 0),
                    (image.shape[0], *(last + 1 for _, last, _, _ in windows), image.shape[-1]),
                    (1, *strides, 1))
    if any(before or after for _, _, before, after in windows):
      tap = lax.pad(tap, jnp.zeros((), tap.dtype),
                    ((0, 0, 0), *((before, after, 0) for _, _, before, after in windows), (0, 0, 0)))
    yield t, tap


def _tap_sum(image: Array, weights: Array, *, strides: tuple[int, ...],
             rhs_dilation: tuple[int, ...], pads: tuple[tuple[int, int], ...],
             out_shape: tuple[int, ...]) -> Array:
  """The primitive's value, from ordinary operations: ``(N, *out_shape, C * m)``."""
  kernel = weights.shape[:-2]
  acc = None
  for t, tap in _tap_slices(image, kernel, strides, rhs_dilation, pads, out_shape):
    term = tap[..., None] * weights[t]
    acc = term if acc is None else acc + term
  return acc.reshape(*acc.shape[:-2], -1)


def _image_cotangent(g: Array, weights: Array, image_shape: Sequence[int], *,
                     strides: tuple[int, ...], rhs_dilation: tuple[int, ...],
                     pads: tuple[tuple[int, int], ...], out_shape: tuple[int, ...]) -> Array:
  """The transpose in ``image``: each tap's ``sum_j g[..., c, j] * w[t, c, j]``, padded
  back to where the tap read (interior padding undoes the stride; negative edge padding
  drops what fell on the zeros of ``pads``). ``image_shape``."""
  kernel, c = weights.shape[:-2], weights.shape[-2]
  g = g.reshape(*g.shape[:-1], c, -1)
  rank = len(kernel)
  acc = None
  # Taps in reverse order: the order in which ``jax.grad`` of the plain sum adds them up,
  # so the input gradient is the same to the bit as it was before this primitive.
  for t in reversed(list(itertools.product(*(range(k) for k in kernel)))):
    part = jnp.sum(g * weights[t], axis=-1)
    config = [(0, 0, 0)]
    for a in range(rank):
      lo = t[a] * rhs_dilation[a] - pads[a][0]
      last = lo + (out_shape[a] - 1) * strides[a]
      config.append((lo, image_shape[1 + a] - 1 - last, strides[a] - 1))
    config.append((0, 0, 0))
    part = lax.pad(part, jnp.zeros((), part.dtype), config)
    acc = part if acc is None else acc + part
  return acc


def _kernel_cotangent_by_tap(image: Array, g: Array, strides: tuple[int, ...],
                             rhs_dilation: tuple[int, ...], pads: tuple[tuple[int, int], ...],
                             kernel: tuple[int, ...]) -> Array:
  """The transpose in ``weights`` as one reduction per tap (what ``jax.grad`` of the
  plain sum gives): the derivatives of ``_kernel_cotangent``. ``(*kernel, C, m)``."""
  c = image.shape[-1]
  g = g.reshape(*g.shape[:-1], c, -1)
  axes = tuple(range(g.ndim - 2))
  sums = [jnp.sum(tap[..., None] * g, axis=axes)
          for _, tap in _tap_slices(image, kernel, strides, rhs_dilation, pads, g.shape[1:-2])]
  return jnp.stack(sums).reshape(*kernel, *sums[0].shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5))
def _kernel_cotangent(image: Array, g: Array, strides: tuple[int, ...],
                      rhs_dilation: tuple[int, ...], pads: tuple[tuple[int, int], ...],
                      kernel: tuple[int, ...]) -> Array:
  """The transpose in ``weights``: ``sum over (n, *out) of tap_t[..., c] * g[..., c, j]`` for
  every tap ``t`` at once, one variadic reduction (then a small sum over the examples).
  ``(*kernel, C, m)``.

  Half-precision products are summed in float32 (and the sums rounded back
  once); its derivatives (second-order gradients) are the per-tap sums of
  ``_kernel_cotangent_by_tap``, which JAX can differentiate and transpose.
  """
  # XLA folds a reduction of constants (arrays a jitted closure captures) at compile time,
  # and its folding of a variadic reduction takes seconds to minutes; the barrier keeps
  # the reduction a run-time computation.
  image, g = lax.optimization_barrier((image, g))
  c = image.shape[-1]
  m = g.shape[-1] // c
  out_shape = g.shape[1:-1]
  if m > 1:  # (N, *out, C, m); without a multiplier no unit axis, which XLA:CPU copies.
    g = g.reshape(*g.shape[:-1], c, m)
  acc_dtype = jnp.promote_types(g.dtype, jnp.float32)
  products = tuple((tap[..., None] * g if m > 1 else tap * g).astype(acc_dtype)
                   for _, tap in _tap_slices(image, kernel, strides, rhs_dilation, pads, out_shape))
  zeros = tuple(jnp.zeros((), acc_dtype) for _ in products)
  # Over the output positions first, one partial sum per example, then over the examples:
  # the first reduction's output has an example axis for XLA:CPU to split across threads
  # (2-3x faster than one reduction over everything, BENCHMARKS.md section 22).
  per_example = lax.reduce(products, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b)),
                           tuple(range(1, 1 + len(out_shape))))
  sums = jnp.sum(jnp.stack(per_example), axis=1)
  return sums.astype(g.dtype).reshape(*kernel, c, m)


@_kernel_cotangent.defjvp
def _kernel_cotangent_jvp(strides, rhs_dilation, pads, kernel, primals, tangents):
  (image, g), (image_dot, g_dot) = primals, tangents
  out = _kernel_cotangent(image, g, strides, rhs_dilation, pads, kernel)
  # Bilinear: d(out) = out(image_dot, g) + out(image, g_dot), as per-tap sums.
  dot = (_kernel_cotangent_by_tap(image_dot, g, strides, rhs_dilation, pads, kernel)
         + _kernel_cotangent_by_tap(image, g_dot, strides, rhs_dilation, pads, kernel))
  return out, dot.astype(out.dtype)


def _taps_abstract_eval(image, weights, *, strides, rhs_dilation, pads, out_shape):
  del strides, rhs_dilation, pads
  return image.update(shape=(image.shape[0], *out_shape, weights.shape[-2] * weights.shape[-1]),
                      dtype=image.dtype)


def _taps_transpose_image(g, image, weights, **params):
  return _image_cotangent(g, weights, image.aval.shape, **params)


def _taps_transpose_weights(g, image, weights, *, strides, rhs_dilation, pads, out_shape):
  del out_shape
  return _kernel_cotangent(image, g, strides, rhs_dilation, pads, tuple(weights.aval.shape[:-2]))


def _taps_batch(args, dims, **params):
  """``vmap``: a batch of images on one kernel joins the examples; otherwise the batch joins
  the channels (each vmapped kernel a block of channels)."""
  image, weights = args
  image_dim, weights_dim = dims
  if weights_dim is None:  # not mapped
    image = jnp.moveaxis(image, image_dim, 0)
    b, n = image.shape[:2]
    out = _depthwise_taps_p.bind(image.reshape(b * n, *image.shape[2:]), weights, **params)
    return out.reshape(b, n, *out.shape[1:]), 0
  b = weights.shape[weights_dim]
  weights = jnp.moveaxis(weights, weights_dim, -3)  # (*kernel, B, C, m)
  if image_dim is None:  # not mapped
    image = jnp.broadcast_to(image[..., None, :], (*image.shape[:-1], b, image.shape[-1]))
  else:
    image = jnp.moveaxis(image, image_dim, -2)  # (N, *spatial, B, C)
  c, m = weights.shape[-2:]
  out = _depthwise_taps_p.bind(image.reshape(*image.shape[:-2], b * c),
                               weights.reshape(*weights.shape[:-3], b * c, m), **params)
  out = out.reshape(*out.shape[:-1], b, c * m)
  return out, out.ndim - 2


def _same_manual_axes(image: Array, weights: Array) -> tuple[Array, Array]:
  """Both operands made to vary along the same ``shard_map`` axes (their union).

  JAX's own operations insert these casts; a primitive's operands must
  already agree, and its result varies along the axes the image does. A
  ``where`` whose condition is a constant ``False`` makes the cast (XLA
  removes the select); nothing happens outside ``shard_map``.
  """
  image_type, weights_type = jax.typeof(image), jax.typeof(weights)
  axes = getattr(image_type, "manual_axis_type", None)
  if axes is not None and axes == getattr(weights_type, "manual_axis_type", None):
    return image, weights
  never = jnp.zeros((), bool)
  first_image, first_weight = image.reshape(-1)[0], weights.reshape(-1)[0]
  return (jnp.where(never, first_weight, image), jnp.where(never, first_image, weights))


_depthwise_taps_p = Primitive("cnnjax_depthwise_taps")
_depthwise_taps_p.def_impl(_tap_sum)
_depthwise_taps_p.def_abstract_eval(_taps_abstract_eval)
mlir.register_lowering(_depthwise_taps_p, mlir.lower_fun(_tap_sum, multiple_results=False))
ad.defbilinear(_depthwise_taps_p, _taps_transpose_image, _taps_transpose_weights)
batching.primitive_batchers[_depthwise_taps_p] = _taps_batch


def conv_tap_matmul(
    x: Array,
    w: Array,
    pads: Pads,
    rhs_dilation: Sequence[int],
    feature_group_count: int = 1,
    strides: Sequence[int] | None = None,
    *,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jnp.dtype | None = None,
) -> Array:
  """Convolution as a sum over kernel taps of (grouped) matrix products of shifted inputs.

  ``out = sum_t slice_t(x_pad) @ w[t]`` where ``slice_t`` is the strided window
  of the padded input under tap ``t``, and ``@`` contracts the ``C_in / G``
  channels of each group. Unlike im2col (``ops.conv_matmul``) no patch tensor
  is built; unlike XLA:CPU's convolution, the kernel gradient is one matrix
  product per tap (``slice_t(x_pad)^T @ g``) whatever the batch, and the
  input gradient a sum of padded products.

  The argument order (``x, w, pads, rhs_dilation, feature_group_count,
  strides``) is that of the ``inner`` convolutions of ``conv_subpixel`` and
  ``conv_per_group``, so it can be passed as one.

  Args:
    x: ``(N, *spatial, C_in)``.
    w: ``(*kernel, C_in / G, C_out)``.
    pads: zero pads ``(lo, hi)`` per spatial axis (negative crops).
    rhs_dilation: kernel dilation per spatial axis.
    feature_group_count: ``G``.
    strides: per spatial axis, default 1.
    precision, preferred_element_type: passed to the products.

  Returns:
    ``(N, *spatial_out, C_out)``.
  """
  rank = x.ndim - 2
  strides = tuple(strides) if strides is not None else (1,) * rank
  kernel = w.shape[:rank]
  groups = feature_group_count
  c_in_g, c_out_g = w.shape[-2], w.shape[-1] // groups
  image = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))
  out_shape = tuple(
      (image.shape[1 + a] - ((kernel[a] - 1) * rhs_dilation[a] + 1)) // strides[a] + 1
      for a in range(rank))
  acc = None
  for t in itertools.product(*(range(k) for k in kernel)):
    start = (0, *(t[a] * rhs_dilation[a] for a in range(rank)), 0)
    limit = (image.shape[0], *(start[1 + a] + (out_shape[a] - 1) * strides[a] + 1 for a in range(rank)),
             image.shape[-1])
    tap = lax.slice(image, start, limit, (1, *strides, 1))
    if groups == 1:
      term = jnp.einsum("...c,co->...o", tap, w[t], precision=precision,
                        preferred_element_type=preferred_element_type)
    else:
      tap = tap.reshape(*tap.shape[:-1], groups, c_in_g)
      mat = w[t].reshape(c_in_g, groups, c_out_g)
      term = jnp.einsum("...gc,cgo->...go", tap, mat, precision=precision,
                        preferred_element_type=preferred_element_type)
      term = term.reshape(*term.shape[:-2], groups * c_out_g)
    acc = term if acc is None else acc + term
  return acc


def conv_per_group(
    x: Array,
    w: Array,
    *,
    strides: Sequence[int],
    pads: Pads,
    rhs_dilation: Sequence[int],
    feature_group_count: int,
    inner: InnerConv,
) -> Array:
  """Grouped convolution as one ordinary (ungrouped) convolution per group, concatenated.

  Group ``g`` maps input channels ``[g * C_in/G, (g+1) * C_in/G)`` to output
  channels ``[g * C_out/G, (g+1) * C_out/G)``: each is a dense convolution,
  computed by ``inner`` (called as ``inner(x_g, w_g, pads, rhs_dilation, 1,
  strides)``), whose gradients are ungrouped convolutions too.

  Args:
    x: ``(N, *spatial, C_in)``.
    w: ``(*kernel, C_in / G, C_out)``.
    strides, rhs_dilation: one int per spatial axis.
    pads: zero pads ``(lo, hi)``, one per spatial axis.
    feature_group_count: ``G``.
    inner: the ordinary convolution.

  Returns:
    ``(N, *spatial_out, C_out)``.
  """
  groups = feature_group_count
  c_in_g = x.shape[-1] // groups
  c_out_g = w.shape[-1] // groups
  outs = [inner(x[..., g * c_in_g:(g + 1) * c_in_g], w[..., g * c_out_g:(g + 1) * c_out_g],
                pads, rhs_dilation, 1, strides)
          for g in range(groups)]
  return jnp.concatenate(outs, axis=-1)


__all__ = ["conv_depthwise_taps", "conv_per_group", "conv_subpixel", "conv_tap_matmul"]
