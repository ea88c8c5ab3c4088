"""Convolution three ways: on ``lax``, as explicit loops, and as one matrix product.

All three take the same arguments and compute the same function:

    out[n, i, j, o] = b[o] + sum_{s, t, c} W[s, t, c, o] *
                      I[n, i * stride + s * dilation, j * stride + t * dilation, g(o) * C_g + c]

for a 2-D input ``I`` (after input dilation and padding), where the sum runs
over the kernel taps ``(s, t)`` and the ``C_g = C_in / groups`` input channels
of the group ``g(o)`` that output channel ``o`` belongs to. 1-D and 3-D are the
same with one or three spatial indices.

Layout is channels last, as in ``lax`` and Flax: inputs ``(N, *spatial, C_in)``,
kernels ``(*spatial, C_in / groups, C_out)``, outputs ``(N, *spatial', C_out)``.

* ``conv``: what layers and models use; lowered to ``lax.conv_general_dilated``
  or, where that is measured to be slower (some shapes on CPU), to the
  ``conv_matmul`` formulation or one of ``ops.conv_fast``'s (``lowering=``;
  the policy that picks one is ``ops.lowering``).
* ``conv_reference``: loops over output positions and kernel taps, the
  definition above written out. Slow; the ground truth of the test suite.
* ``conv_matmul``: im2col, every patch extracted then one grouped matrix
  product. A third, independent formulation, and on some shapes the fastest.

``conv`` also has a ``'chunked'`` lowering: ``lax.conv_general_dilated`` on
consecutive chunks of ``ops.lowering.CHUNK_BATCH`` examples, concatenated. The same
function (examples are independent), but XLA:CPU computes the kernel gradient
of a whole batch of 128 or 256 two to twenty times slower than the sum of the
kernel gradients of its chunks of 16, so on CPU this is the fast path for most
layers (``ops.lowering.choose_lowering``).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops import arithmetic, conv_fast
from cnnjax.ops import lowering as policy
from cnnjax.ops.arithmetic import PaddingLike
from cnnjax.ops.validation import as_tuple, channels_first_hint, check_floating, check_input
# The policy's names, re-exported where they were first defined.
from cnnjax.ops.lowering import LOWERINGS, choose_lowering, default_lowering  # noqa: F401

Array = jax.Array
IntSeq = int | Sequence[int] | None

_LAYOUT = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def check_conv_args(
    x: Any, w: Any, b: Any, feature_group_count: int
) -> int:
  """Validates a convolution's operands; returns the number of spatial axes.

  Raises ``ValueError``/``TypeError`` naming the expected and received shapes
  or dtypes, so that no malformed call reaches XLA.
  """
  for name, a in (("x", x), ("w", w)):
    if not hasattr(a, "shape"):
      raise TypeError(f"{name} must be an array, got {type(a).__name__}")
  rank = w.ndim - 2
  if rank not in _LAYOUT:
    raise ValueError(
        f"kernel w must be (*spatial, C_in / groups, C_out) with 1, 2 or 3 "
        f"spatial axes (rank 3, 4 or 5), got shape {tuple(w.shape)}")
  check_input(x, rank, "x")
  check_floating("w", w)
  if not isinstance(feature_group_count, int) or feature_group_count < 1:
    raise ValueError(f"feature_group_count must be a positive int, got {feature_group_count!r}")
  groups = feature_group_count
  c_in, c_group, c_out = x.shape[-1], w.shape[-2], w.shape[-1]
  if c_in % groups:
    raise ValueError(
        f"input channels ({c_in}, x.shape={tuple(x.shape)}) must be divisible by "
        f"feature_group_count={groups}")
  if c_out % groups:
    raise ValueError(
        f"output channels ({c_out}, w.shape={tuple(w.shape)}) must be divisible "
        f"by feature_group_count={groups}")
  if c_group * groups != c_in:
    hint = channels_first_hint(tuple(x.shape), c_group * groups)
    raise ValueError(
        f"expected NHWC input (channels last) with {c_group * groups} channels "
        f"(kernel {tuple(w.shape)} has C_in/groups={c_group} and "
        f"feature_group_count={groups}), got x.shape={tuple(x.shape)} with "
        f"{c_in} channels on the last axis.{hint}")
  if b is not None:
    if not hasattr(b, "shape") or tuple(b.shape) != (c_out,):
      raise ValueError(
          f"bias must have shape ({c_out},) to match the kernel's C_out, got "
          f"{tuple(getattr(b, 'shape', ())) or type(b).__name__}")
    check_floating("b", b)
  return rank


def _normalize(x, w, b, strides, padding, lhs_dilation, rhs_dilation, feature_group_count):
  """Shared argument handling: validated tuples, explicit pads and fill mode."""
  rank = check_conv_args(x, w, b, feature_group_count)
  strides = as_tuple(strides, rank, "strides")
  lhs_dilation = as_tuple(lhs_dilation, rank, "lhs_dilation")
  rhs_dilation = as_tuple(rhs_dilation, rank, "rhs_dilation")
  spatial, kernel = tuple(x.shape[1:-1]), tuple(w.shape[:-2])
  mode, pads = arithmetic.resolve_padding(
      padding, spatial, kernel, strides, rhs_dilation, lhs_dilation)
  out = tuple(arithmetic.conv_output_size(n, k, s, p, d, di) for n, k, s, p, d, di in zip(
      spatial, kernel, strides, pads, rhs_dilation, lhs_dilation))
  if min(out) < 1:
    effective = tuple(arithmetic.dilated_size(k, d) for k, d in zip(kernel, rhs_dilation))
    padded = tuple(arithmetic.dilated_size(n, di) + lo + hi
                   for n, di, (lo, hi) in zip(spatial, lhs_dilation, pads))
    raise ValueError(
        f"kernel larger than the padded input: effective kernel {effective} "
        f"(kernel {kernel}, dilation {rhs_dilation}) does not fit the padded "
        f"input {padded} (input {spatial}, padding {padding!r}); expected each "
        f"effective kernel size <= padded input size")
  return rank, strides, lhs_dilation, rhs_dilation, mode, pads


def pad_spatial(x: Array, pads: Sequence[tuple[int, int]], mode: str, value: float = 0.0) -> Array:
  """Pads the spatial axes of ``(N, *spatial, C)`` with ``'constant'``, ``'wrap'`` or ``'reflect'``."""
  widths = ((0, 0), *pads, (0, 0))
  if all(lo == hi == 0 for lo, hi in pads):
    return x
  if mode == "constant":
    return jnp.pad(x, widths, mode="constant", constant_values=value)
  return jnp.pad(x, widths, mode=mode)


def _zero_pad(x: Array, pads: Sequence[tuple[int, int]]) -> Array:
  """Zero-pads (negative: crops) the spatial axes of ``(N, *spatial, C)``."""
  config = ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0))
  return lax.pad(x, jnp.zeros((), x.dtype), config)


def dilate_spatial(x: Array, dilation: Sequence[int]) -> Array:
  """Inserts ``d - 1`` zeros between neighbouring elements of each spatial axis."""
  if all(d == 1 for d in dilation):
    return x
  shape = (x.shape[0], *(arithmetic.dilated_size(n, d) for n, d in zip(x.shape[1:-1], dilation)), x.shape[-1])
  index = (slice(None), *(slice(None, None, d) for d in dilation), slice(None))
  return jnp.zeros(shape, x.dtype).at[index].set(x)


def conv(
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    strides: IntSeq = None,
    padding: PaddingLike = "VALID",
    lhs_dilation: IntSeq = None,
    rhs_dilation: IntSeq = None,
    feature_group_count: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: Any = None,
    lowering: str = "auto",
) -> Array:
  """N-D convolution, channels last, on ``lax.conv_general_dilated`` (or im2col).

  Args:
    x: input ``(N, *spatial, C_in)`` with 1, 2 or 3 spatial axes, floating.
    w: kernel ``(*spatial_k, C_in / feature_group_count, C_out)`` (HWIO).
    b: optional bias ``(C_out,)``.
    strides: int or one per spatial axis; default 1.
    padding: ``'VALID'`` (default), ``'SAME'`` (output ``ceil(n / stride)``,
      TensorFlow's split: the odd element on the high side), ``'CIRCULAR'``
      (the ``'SAME'`` amounts, wrapped: exactly shift-equivariant at stride 1),
      ``'REFLECT'``, ``'CAUSAL'`` (1-D, left pad only), an int, or explicit
      ``((lo, hi), ...)`` pairs.
    lhs_dilation: input dilation (a fractionally strided, i.e. transposed,
      convolution); ``'SAME'``-like pads are computed on the dilated input.
    rhs_dilation: kernel dilation (atrous convolution).
    feature_group_count: grouped convolution; ``C_in`` and ``C_out`` must be
      divisible by it. ``C_in`` groups of one channel is a depthwise conv.
    precision, preferred_element_type: passed to lax.
    lowering: the same function, other code. ``'lax'``
      (``lax.conv_general_dilated``); ``'chunked'`` (``lax`` on consecutive
      chunks of ``ops.lowering.CHUNK_BATCH`` examples, concatenated);
      ``'matmul'`` (``conv_matmul``, im2col); ``'subpixel'`` (an
      input-dilated convolution as one convolution per output phase,
      ``conv_fast.conv_subpixel``, each in chunks of
      ``ops.lowering.phase_chunk(N)`` examples, or a matrix product for a 1x1
      phase kernel; strides must be 1; without input dilation
      it is ``'matmul'``); ``'taps'`` (one shifted multiply-add per kernel tap
      for a depthwise convolution, one shifted matrix product per tap
      otherwise); ``'per_group'`` (one convolution per group). ``'auto'``
      (default): ``ops.choose_lowering``'s pick for this shape and the
      default backend, or the lowering set by ``ops.default_lowering``.

  Returns:
    ``(N, *spatial_out, C_out)`` with ``spatial_out`` as
    ``ops.conv_output_shape`` gives.

  Raises:
    ValueError / TypeError: for wrong ranks, channel mismatches (including a
    channels-first input), bad groups, a kernel larger than the padded input,
    integer arrays, an unknown ``lowering`` or ``'subpixel'`` with strides,
    naming the expected and received shapes or dtypes.
  """
  policy.check_lowering(lowering)
  rank, strides, lhs_dilation, rhs_dilation, mode, pads = _normalize(
      x, w, b, strides, padding, lhs_dilation, rhs_dilation, feature_group_count)
  if lowering == "auto":
    lowering = policy.current_default()
  if lowering == "auto":
    lowering = policy.choose_lowering(
        x.shape, w.shape, strides=strides, padding=pads, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, feature_group_count=feature_group_count)
  dilated = any(d != 1 for d in lhs_dilation)
  if lowering == "subpixel" and not dilated:
    lowering = "matmul"  # One phase: the sub-pixel formulation is its im2col inner product.
  if lowering == "subpixel" and any(s != 1 for s in strides):
    raise ValueError(
        f"lowering='subpixel' computes input-dilated convolutions with strides 1, "
        f"got strides={strides} with lhs_dilation={lhs_dilation}; use 'matmul' or 'lax'")
  return _compiled(
      x, w, b, lowering=lowering, mode=mode, pads=pads, strides=strides,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      feature_group_count=feature_group_count, precision=_hashable(precision),
      preferred_element_type=preferred_element_type, chunk=policy.CHUNK_BATCH,
      phase_chunk=policy.phase_chunk(x.shape[0]))


def _hashable(precision: Any) -> Any:
  """``precision`` as a static argument of ``_compiled``: a list of two becomes a tuple."""
  return tuple(precision) if isinstance(precision, list) else precision


@functools.partial(jax.jit, static_argnames=(
    "lowering", "mode", "pads", "strides", "lhs_dilation", "rhs_dilation",
    "feature_group_count", "precision", "preferred_element_type", "chunk", "phase_chunk"))
def _compiled(x: Array, w: Array, b: Array | None, *, lowering: str, mode: str, pads, strides,
              lhs_dilation, rhs_dilation, feature_group_count: int, precision: Any,
              preferred_element_type: Any, chunk: int, phase_chunk: int) -> Array:
  """``conv`` once its arguments are checked and its lowering chosen, as one jitted function.

  Inside a traced function this is inlined into the caller's program. Called
  eagerly (``Module.init`` and ``apply`` outside ``jit``, interactive use),
  it runs as one compiled program per configuration instead of dispatching
  (and compiling) each of the formulation's slices, products and sums on its
  own: a depthwise ``'taps'`` layer is some forty such operations.
  """
  rank = x.ndim - 2
  if lowering == "matmul":
    image = pad_spatial(dilate_spatial(x, lhs_dilation), pads, mode)
    y = _im2col(image, w, strides, rhs_dilation, feature_group_count, precision=precision,
                preferred_element_type=preferred_element_type)
  else:
    dilated = any(d != 1 for d in lhs_dilation)
    if mode != "constant" or (dilated and lowering not in ("lax", "chunked", "subpixel")):
      # Wrapped/reflected values are real data, so they are materialised (lax
      # itself only pads with zeros); so is the input dilation for the
      # formulations that do not take it.
      x = pad_spatial(dilate_spatial(x, lhs_dilation), pads, mode)
      pads = ((0, 0),) * rank
      lhs_dilation = (1,) * rank
    options = dict(precision=precision, preferred_element_type=preferred_element_type)
    y = _lowered(lowering, x, w, pads, strides, lhs_dilation, rhs_dilation, feature_group_count,
                 options, chunk, phase_chunk)
  if b is not None:
    y = y + b.astype(y.dtype)
  return y


def _lowered(lowering: str, x: Array, w: Array, pads, strides, lhs_dilation, rhs_dilation,
             feature_group_count: int, options: dict[str, Any], chunk: int,
             phase_chunk: int) -> Array:
  """``conv``'s computation by ``lowering`` (padding already applied where it must be), no bias."""
  rank = x.ndim - 2
  ones = (1,) * rank

  def lax_conv(x, w, pads, rhs_dilation, groups, window_strides=strides, lhs_dilation=lhs_dilation):
    return lax.conv_general_dilated(
        x, w, window_strides=window_strides, padding=pads, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=_LAYOUT[rank],
        feature_group_count=groups, **options)

  def chunked_conv(x, w, pads, rhs_dilation, groups, window_strides=strides,
                   lhs_dilation=lhs_dilation, chunk=chunk):
    if all(d == 1 for d in lhs_dilation) and policy.exceeds_kernel_reach(w.shape, pads, rhs_dilation):
      # Padded beforehand: XLA:CPU's kernel gradient is far slower when the
      # convolution's own padding is wider than the kernel reaches.
      x, pads = _zero_pad(x, pads), ((0, 0),) * rank
    n = x.shape[0]
    if n <= chunk:
      return lax_conv(x, w, pads, rhs_dilation, groups, window_strides, lhs_dilation)
    return jnp.concatenate(
        [lax_conv(x[i:i + chunk], w, pads, rhs_dilation, groups, window_strides, lhs_dilation)
         for i in range(0, n, chunk)], axis=0)

  def phase_conv(x, w, pads, rhs_dilation, groups):
    # A 1x1 phase kernel is a matrix product; larger ones are ordinary
    # convolutions of the undilated input, in chunks of ``phase_chunk``.
    if all(k == 1 for k in w.shape[:rank]):
      return _im2col(_zero_pad(x, pads), w, ones, rhs_dilation, groups, **options)
    return chunked_conv(x, w, pads, rhs_dilation, groups, window_strides=ones,
                        lhs_dilation=ones, chunk=phase_chunk)

  if lowering == "subpixel":
    y = conv_fast.conv_subpixel(
        x, w, pads=pads, lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count, inner=phase_conv)
  elif lowering == "taps" and w.shape[-2] == 1 and feature_group_count > 1:
    y = conv_fast.conv_depthwise_taps(
        x, w, strides=strides, pads=pads, rhs_dilation=rhs_dilation, **options)
  elif lowering == "taps":
    y = conv_fast.conv_tap_matmul(x, w, pads, rhs_dilation, feature_group_count, strides,
                                  **options)
  elif lowering == "per_group":
    y = conv_fast.conv_per_group(
        x, w, strides=strides, pads=pads, rhs_dilation=rhs_dilation,
        feature_group_count=feature_group_count, inner=chunked_conv)
  elif lowering == "chunked":
    y = chunked_conv(x, w, pads, rhs_dilation, feature_group_count)
  else:
    y = lax_conv(x, w, pads, rhs_dilation, feature_group_count)
  return y


def _pixel(image: Array, pos: tuple[int, ...]) -> Array:
  """``image[:, *pos, :]``, the ``(N, C)`` values at one spatial position.

  Read with ``dynamic_slice`` so the position is an operand rather than a
  static parameter: every position then shares one compiled op (and one for
  its transpose), where static indexing compiles a new one per position.
  """
  rank = len(pos)
  start = (0, *pos, 0)
  size = (image.shape[0], *(1,) * rank, image.shape[-1])
  return lax.dynamic_slice(image, start, size).reshape(image.shape[0], image.shape[-1])


def _tap(weights: Array, tap: tuple[int, ...]) -> Array:
  """``weights[*tap]``, read like ``_pixel`` so every tap shares one compiled op."""
  rank = len(tap)
  size = (*(1,) * rank, *weights.shape[rank:])
  return lax.dynamic_slice(weights, (*tap, *(0,) * (weights.ndim - rank)), size).reshape(weights.shape[rank:])


def conv_reference(
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    strides: IntSeq = None,
    padding: PaddingLike = "VALID",
    lhs_dilation: IntSeq = None,
    rhs_dilation: IntSeq = None,
    feature_group_count: int = 1,
) -> Array:
  """The definition of convolution, as explicit loops. Same contract as ``conv``.

  For every output position ``i`` (a tuple of spatial indices) and every kernel
  tap ``s``, the input value at ``i * stride + s * dilation`` is multiplied by
  the kernel's ``(C_in / groups, C_out)`` matrix at ``s`` within each group,
  and the products are summed. Only indexing, ``+`` and ``*`` are used: no lax
  convolution, FFT or patch extraction. Meant for small test cases: it issues
  one small product per (position, tap).
  """
  rank, strides, lhs_dilation, rhs_dilation, mode, pads = _normalize(
      x, w, b, strides, padding, lhs_dilation, rhs_dilation, feature_group_count)
  image = pad_spatial(dilate_spatial(x, lhs_dilation), pads, mode)
  groups = feature_group_count
  n, c_in, c_out = x.shape[0], x.shape[-1], w.shape[-1]
  c_in_g, c_out_g = c_in // groups, c_out // groups
  kernel = w.shape[:-2]
  out_shape = tuple(
      (image.shape[1 + a] - arithmetic.dilated_size(kernel[a], rhs_dilation[a])) // strides[a] + 1
      for a in range(rank))
  dtype = jnp.result_type(x, w)

  # (C_in/g, g, C_out/g) per tap: the kernel of group g is w[..., :, g-th block].
  weights = w.reshape(*kernel, c_in_g, groups, c_out_g)
  rows = []
  for i in itertools.product(*(range(o) for o in out_shape)):
    acc = jnp.zeros((n, groups, c_out_g), dtype)
    for s in itertools.product(*(range(k) for k in kernel)):
      pos = tuple(i[a] * strides[a] + s[a] * rhs_dilation[a] for a in range(rank))
      pixel = _pixel(image, pos).reshape(n, groups, c_in_g)
      acc = acc + jnp.einsum("ngc,cgo->ngo", pixel, _tap(weights, s))
    rows.append(acc.reshape(n, c_out))
  out = jnp.stack(rows, axis=1).reshape(n, *out_shape, c_out)
  if b is not None:
    out = out + b.astype(dtype)
  return out


def extract_patches(
    image: Array, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> Array:
  """im2col: every kernel-sized patch of an already padded ``(N, *spatial, C)``.

  Returns:
    ``(N, *spatial_out, prod(kernel), C)``: for each output position, the
    input values under each kernel tap, taps in row-major order. Built from one
    strided slice per tap.
  """
  rank = len(kernel)
  out_shape = tuple(
      (image.shape[1 + a] - arithmetic.dilated_size(kernel[a], dilation[a])) // strides[a] + 1
      for a in range(rank))
  taps = []
  for s in itertools.product(*(range(k) for k in kernel)):
    start = (0, *(s[a] * dilation[a] for a in range(rank)), 0)
    limit = (image.shape[0],
             *(s[a] * dilation[a] + (out_shape[a] - 1) * strides[a] + 1 for a in range(rank)),
             image.shape[-1])
    taps.append(lax.slice(image, start, limit, (1, *strides, 1)))
  return jnp.stack(taps, axis=-2)


def conv_matmul(
    x: Array,
    w: Array,
    b: Array | None = None,
    *,
    strides: IntSeq = None,
    padding: PaddingLike = "VALID",
    lhs_dilation: IntSeq = None,
    rhs_dilation: IntSeq = None,
    feature_group_count: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: Any = None,
) -> Array:
  """Convolution as one grouped matrix product over extracted patches (im2col).

  Same contract as ``conv``. The patches ``(N, *out, K, C_in)`` are regrouped
  to ``(N * prod(out), G, K * C_in / G)`` and multiplied by the kernel as
  ``(G, K * C_in / G, C_out / G)``.
  """
  _, strides, lhs_dilation, rhs_dilation, mode, pads = _normalize(
      x, w, b, strides, padding, lhs_dilation, rhs_dilation, feature_group_count)
  return _compiled(
      x, w, b, lowering="matmul", mode=mode, pads=pads, strides=strides,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      feature_group_count=feature_group_count, precision=_hashable(precision),
      preferred_element_type=preferred_element_type, chunk=policy.CHUNK_BATCH,
      phase_chunk=policy.phase_chunk(x.shape[0]))


def _im2col(image: Array, w: Array, strides: Sequence[int], rhs_dilation: Sequence[int],
            groups: int, *, precision: lax.PrecisionLike = None,
            preferred_element_type: Any = None) -> Array:
  """``conv_matmul`` of an already padded and dilated input: patches, then one product."""
  kernel = tuple(w.shape[:-2])
  patches = extract_patches(image, kernel, strides, rhs_dilation)
  n, out_shape, taps = patches.shape[0], patches.shape[1:-2], patches.shape[-2]
  c_out = w.shape[-1]
  c_in_g = image.shape[-1] // groups
  cols = patches.reshape(-1, taps, groups, c_in_g).transpose(0, 2, 1, 3)
  cols = cols.reshape(-1, groups, taps * c_in_g)
  mat = w.reshape(taps, c_in_g, groups, c_out // groups).transpose(2, 0, 1, 3)
  mat = mat.reshape(groups, taps * c_in_g, c_out // groups)
  y = jnp.einsum("pgk,gko->pgo", cols, mat, precision=precision,
                 preferred_element_type=preferred_element_type)
  return y.reshape(n, *out_shape, c_out)
