"""The ``>>>`` examples in cnnjax's docstrings run and print what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import cnnjax


def _modules() -> list[str]:
  names = ["cnnjax"]
  for info in pkgutil.walk_packages(cnnjax.__path__, prefix="cnnjax."):
    names.append(info.name)
  return sorted(names)


def _examples(name: str) -> list[doctest.DocTest]:
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  # Only objects defined in this module: a re-export is tested where it lives.
  return [t for t in finder.find(module, name) if t.examples]


MODULES = [name for name in _modules() if _examples(name)]


def test_the_public_api_has_examples_to_run():
  # The parametrised test below is only as good as what it finds: if the
  # finder silently found nothing, every docstring example would go untested.
  assert {"cnnjax.layers.conv", "cnnjax.inspect.summary", "cnnjax.models.registry"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for test in _examples(name):
    runner.run(test)
  results = runner.summarize(verbose=False)
  assert results.failed == 0, f"{results.failed} of {results.attempted} examples in {name} failed (output above)"
