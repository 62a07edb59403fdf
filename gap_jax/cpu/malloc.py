"""glibc's malloc, set for XLA:CPU: one heap that keeps freed memory, so the per-step temp buffer (0.3-0.8 GB
for NiN) is reused instead of mmap-ed and page-faulted afresh at every step (benchmarks/README.md, "Page
faults", has the measurements). glibc reads these variables when a process starts (mallopt later does not
reach XLA's allocations), so an entry point calls `restart_with_settings()` first: it re-executes the
process with them where JAX will compute on the CPU, and does nothing on a GPU or TPU."""

import importlib.metadata
import os
import sys

SETTINGS = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}
# JAX's accelerator plugins: with one installed (and JAX_PLATFORMS unset) JAX computes on the accelerator.
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "libtpu", "jax-rocm7-plugin")


def computes_on_cpu() -> bool:
  """Whether JAX's default backend will be the CPU, without starting JAX."""
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  return not any(_installed(name) for name in ACCELERATOR_PLUGINS)


def _installed(distribution: str) -> bool:
  try:
    importlib.metadata.version(distribution)
    return True
  except importlib.metadata.PackageNotFoundError:
    return False


def is_set() -> bool:
  return all(os.environ.get(k) == v for k, v in SETTINGS.items())


def needs_restart() -> bool:
  """On the CPU, unless SETTINGS are set or the user has set any of them (their choice stands)."""
  return not any(k in os.environ for k in SETTINGS) and computes_on_cpu()


def restart_with_settings() -> None:
  """Re-execute this process (same interpreter and arguments) with SETTINGS, if it needs_restart()."""
  if not needs_restart():
    return
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **SETTINGS})
