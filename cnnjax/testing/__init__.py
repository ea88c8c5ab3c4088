"""Property-test toolkit: shift equivariance, shift consistency, hypothesis strategies.

* ``assert_shift_equivariant(fn, x, shift, ...)``: ``fn(shift(x)) ==
  shift(fn(x))``, circularly or on the interior (zero padding), at a stride.
* ``assert_shift_invariant(fn, x, shift, ...)``: ``fn(roll(x)) == fn(x)``.
* ``shift_consistency(apply_fn, images, ...)``: how often a classifier gives
  the same class to two shifted copies ('circular' or 'crop' protocol).
* ``images``, ``shifts``, ``conv_configs`` (``ConvConfig``): hypothesis
  strategies, in ``cnnjax.testing.strategies``. They need ``hypothesis``
  (``pip install 'cnnjax[testing]'``) and are imported on first use, so the
  assertions work without it; shapes come from a few buckets per range.
"""

from __future__ import annotations

import importlib
from typing import Any

from cnnjax.testing.consistency import ShiftConsistency, shift_consistency
from cnnjax.testing.equivariance import (
    assert_shift_equivariant,
    assert_shift_invariant,
    infer_margin,
)

_STRATEGIES = ("ConvConfig", "conv_configs", "images", "shifts")

__all__ = [
    "ConvConfig",
    "ShiftConsistency",
    "assert_shift_equivariant",
    "assert_shift_invariant",
    "conv_configs",
    "images",
    "infer_margin",
    "shift_consistency",
    "shifts",
    "strategies",
]


def __getattr__(name: str) -> Any:
  if name == "strategies" or name in _STRATEGIES:
    module = importlib.import_module("cnnjax.testing.strategies")
    return module if name == "strategies" else getattr(module, name)
  raise AttributeError(f"module 'cnnjax.testing' has no attribute {name!r}")
