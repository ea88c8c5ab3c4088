"""Sphinx configuration of the cnnjax documentation.

The API reference is generated at build time: one page per public subpackage of
``cnnjax`` (every ``cnnjax.<name>`` whose name does not start with an
underscore), listing what its ``__all__`` exports. A new subpackage therefore
gets its page without editing this file; ``API_ORDER`` only fixes the order of
the known ones in the navigation.

The build is offline: no intersphinx, no remote images, tutorials executed
locally by myst-nb (a cell that raises fails the build).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import pathlib
import pkgutil
import sys
import types

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

# Tutorials and doctests run on the CPU with one device unless they ask for
# more; the parallelism tutorial sets XLA_FLAGS itself before importing jax.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The embedded digits data set prepares itself (offline, in about a second)
# into the build directory rather than the user's ~/tensorflow_datasets.
os.environ.setdefault("TFDS_DATA_DIR", str(DOCS / "_build" / "tensorflow_datasets"))

import cnnjax  # noqa: E402

project = "cnnjax"
author = "the cnnjax authors"
copyright = "the cnnjax authors, Apache-2.0"
release = cnnjax.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "build.sh", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"

html_theme = "furo"
html_title = f"cnnjax {release}"
html_static_path = []
html_show_sourcelink = False

# MathJax is loaded from a CDN by default; a page that cannot reach it still
# renders (the formulas stay as TeX), and nothing is fetched at build time.

# --- autodoc ----------------------------------------------------------------
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Attributes as fields of the class, so they do not collide with the
# dataclass fields autodoc documents as members.
napoleon_use_ivar = True
add_module_names = False
python_maximum_signature_line_length = 100

# Broken references to cnnjax objects are errors; references to other
# libraries (jax, flax, optax, numpy ...) cannot be resolved without
# intersphinx, which would need the network, so they are left as text.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", r"(?!cnnjax\.).*")]
# The data set protocol is documented with train_and_evaluate; setup.py has no page of its own.
nitpick_ignore = [("py:class", "cnnjax.train.setup.DataSet")]
# A bare field name in a signature (``dtype``) matches the same field of many
# modules; the ambiguity is harmless and the first match is as good as any.
suppress_warnings = ["ref.python"]

# --- myst-nb ----------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = os.environ.get("CNNJAX_DOCS_EXECUTE", "force")
# Seconds per cell; generous, as a shared CI machine can be much slower than
# the minute each tutorial takes on two idle cores.
nb_execution_timeout = int(os.environ.get("CNNJAX_DOCS_CELL_TIMEOUT", "1200"))
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True
nb_execution_excludepatterns = []
# Notebooks run in the docs directory's parent, so relative paths in them work
# from the repository root as in the README.
nb_execution_in_temp = True

# --- the API reference ------------------------------------------------------
API_ORDER = ["ops", "layers", "blocks", "models", "data", "train", "inspect", "testing", "nnx"]
API_DIR = DOCS / "api" / "generated"


def public_subpackages() -> list[str]:
  """Names of cnnjax's public subpackages, known ones first in API_ORDER."""
  found = {m.name for m in pkgutil.iter_modules(cnnjax.__path__) if not m.name.startswith("_")}
  return [n for n in API_ORDER if n in found] + sorted(found - set(API_ORDER))


def _exports(module: types.ModuleType) -> list[str]:
  """What a module exports: its ``__all__``, or else the public classes and
  functions defined in it or in its own submodules."""
  names = getattr(module, "__all__", None)
  if names is None:
    prefix = module.__name__
    names = [n for n, v in vars(module).items()
             if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
             and (getattr(v, "__module__", "") == prefix or getattr(v, "__module__", "").startswith(prefix + "."))]
  return list(names)


def _directive(obj: object) -> str:
  if inspect.isclass(obj):
    return "autoclass"
  if isinstance(obj, functools.partial):
    return "partial"
  if inspect.isfunction(obj) or inspect.isbuiltin(obj):
    return "autofunction"
  return "data"


def _attr_comment(qualname: str, name: str) -> list[str]:
  """The ``#:`` comment or string after ``name = ...`` in the package's modules."""
  from sphinx.pycode import ModuleAnalyzer
  for modname in sorted(m for m in sys.modules if m == qualname or m.startswith(qualname + ".")):
    try:
      docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
    except Exception:  # modules without source (extensions) have no comments
      continue
    if ("", name) in docs:
      return [line for line in docs[("", name)] if line is not None]
  return []


def _data_lines(qualname: str, name: str, obj: object, exports: dict[str, object]) -> list[str]:
  """A ``.. data::`` entry for a constant or a partial, without the type's docstring."""
  lines = [f".. data:: {name}"]
  if isinstance(obj, functools.partial):
    target = next((n for n, v in exports.items() if v is obj.func), None)
    base = f":class:`{target}`" if target else f"``{getattr(obj.func, '__qualname__', obj.func)}``"
    kw = ", ".join(f"{k}={v!r}" for k, v in obj.keywords.items())
    lines += ["", f"   {base} with ``{kw}`` (a :func:`functools.partial`).", ""]
    return lines
  value = repr(obj)
  lines += [f"   :type: {type(obj).__name__}"]
  if len(value) <= 120 and "\n" not in value:
    lines += [f"   :value: {value}"]
  lines.append("")
  lines += [f"   {line}" for line in _attr_comment(qualname, name)]
  lines.append("")
  return lines


def _page(qualname: str, children: list[str]) -> str:
  module = importlib.import_module(qualname)
  title = f"``{qualname}``"
  lines = [title, "=" * len(title), "", f".. automodule:: {qualname}", "   :no-members:", "",
           f".. currentmodule:: {qualname}", ""]
  objects, submodules = [], []
  for name in _exports(module):
    obj = getattr(module, name)
    (submodules if inspect.ismodule(obj) else objects).append((name, obj))
  if submodules:
    lines += [".. rubric:: Submodules", "", ".. toctree::", "   :maxdepth: 1", ""]
    for name, obj in submodules:
      lines.append(f"   {obj.__name__}")
      children.append(obj.__name__)
    lines.append("")
  if objects:
    lines += [".. rubric:: Summary", "", ".. autosummary::", "   :nosignatures:", ""]
    # Constants and partials are left out of the table: autosummary would show
    # the docstring of their type (dict, functools.partial).
    lines += [f"   {name}" for name, obj in objects if _directive(obj) not in ("data", "partial")]
    lines.append("")
    exports = dict(objects)
    for name, obj in objects:
      directive = _directive(obj)
      if directive in ("data", "partial"):
        lines += _data_lines(qualname, name, obj, exports)
        continue
      lines.append(f".. {directive}:: {name}")
      if directive == "autoclass":
        lines += ["   :members:", "   :special-members: __call__"]
      lines.append("")
  return "\n".join(lines)


def write_api_pages(app=None) -> None:
  """Writes docs/api/generated/<module>.rst for every public module."""
  API_DIR.mkdir(parents=True, exist_ok=True)
  pending = [f"cnnjax.{n}" for n in public_subpackages()]
  written = []
  while pending:
    qualname = pending.pop(0)
    children: list[str] = []
    text = _page(qualname, children)
    path = API_DIR / f"{qualname}.rst"
    if not path.exists() or path.read_text() != text:  # unchanged pages stay cached
      path.write_text(text)
    written.append(path.name)
    pending.extend(children)
  for stale in API_DIR.glob("*.rst"):
    if stale.name not in written:
      stale.unlink()
  top = [f"generated/cnnjax.{n}" for n in public_subpackages()]
  index = ["API reference", "=============", "",
           "One page per public module, generated from the docstrings. ``cnnjax.summary``",
           "is :func:`cnnjax.inspect.summary`, re-exported at the top level.", "",
           ".. toctree::", "   :maxdepth: 1", ""] + [f"   {t}" for t in top] + [""]
  path = DOCS / "api" / "index.rst"
  text = "\n".join(index)
  if not path.exists() or path.read_text() != text:
    path.write_text(text)


def setup(app):
  app.connect("builder-inited", write_api_pages)
