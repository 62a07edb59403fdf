"""JAX's persistent compilation cache for the command-line entry points: the seeds of one experiment
point, the rows of a table and a resumed run compile the same programs, ~5 s each on 2 CPU cores, once.
Set GAP_JAX_COMPILATION_CACHE to move it, or to an empty string to turn it off."""

import os
from pathlib import Path

import jax

DEFAULT = Path.home() / ".cache" / "gap_jax" / "xla"


def enable() -> None:
  path = os.environ.get("GAP_JAX_COMPILATION_CACHE", str(DEFAULT))
  if path and jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir", path)
