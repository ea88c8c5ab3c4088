"""A persistent compilation cache, so that a second run of a command skips XLA compilation.

JAX can write every compiled program to a directory and read it back when the
same program (same jaxpr, shapes, flags, jax version and backend) is compiled
again, in this process or a later one. cnnjax's training step takes seconds to
compile on CPU (tens of seconds for a ResNet); with the cache, a rerun of the
same experiment reaches its first step after tracing and a file read.

Call ``enable_compilation_cache()`` once, before the first compilation (at
the start of a script's ``main``). Off by default in the library: a cache is
process-wide state that a library should not turn on by being imported.
"""

from __future__ import annotations

import os

import jax

#: Where ``enable_compilation_cache`` writes by default, unless
#: ``$CNNJAX_COMPILATION_CACHE`` names another directory. (The training
#: config's ``compilation_cache_dir`` defaults to that variable too, where an
#: empty value turns the cache off.)
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "cnnjax", "jax")


def enable_compilation_cache(path: str | os.PathLike | None = None,
                             min_compile_time_s: float = 0.5) -> str:
  """Turns on JAX's persistent compilation cache in ``path``; returns the directory used.

  Args:
    path: cache directory; default ``$CNNJAX_COMPILATION_CACHE`` or
      ``DEFAULT_DIR``. Created if missing.
    min_compile_time_s: programs that compiled faster than this are not
      written (JAX's default is 1 s; a LeNet step compiles in about that).

  Returns:
    The absolute cache directory.
  """
  if path is None:
    path = os.environ.get("CNNJAX_COMPILATION_CACHE") or DEFAULT_DIR
  if min_compile_time_s < 0:
    raise ValueError(f"min_compile_time_s must be >= 0, got {min_compile_time_s}")
  path = os.path.abspath(os.fspath(path))
  os.makedirs(path, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path


__all__ = ["DEFAULT_DIR", "enable_compilation_cache"]
