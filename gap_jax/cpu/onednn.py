"""Convolutions by oneDNN on the CPU backend: forward and both gradients as XLA FFI custom calls.

XLA:CPU (jaxlib 0.10) runs convolutions on Eigen or YNNPACK and has no switch to oneDNN, whose JIT kernels
(PyTorch's) are faster on most CPUs, in bfloat16 on AMX tiles far faster (benchmarks/README.md).
`onednn_conv.cc` wraps them as FFI handlers, float32 and bfloat16 alike. It is compiled with the system's C++
compiler on first use, against oneDNN from PyPI (the `cpu` extra), and cached under ~/.cache/gap_jax/native
(GAP_JAX_NATIVE_CACHE moves it). Where that cannot happen (no oneDNN, no compiler, not Linux x86_64)
`why_unavailable()` says why and gap_jax/cpu keeps XLA's convolution. bfloat16 also needs the CPU's native
bfloat16 instructions (`bf16_isa()`), without which oneDNN would emulate them.

oneDNN picks an implementation per shape and CPU; `unverified()` names the ones the tests have not
compared with `lax.conv` and trained with (VERIFIED), and such a shape keeps XLA's convolution.
"""

import ctypes
import functools
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

SOURCE = Path(__file__).with_name("onednn_conv.cc")
TARGETS = {"forward": "GapJaxConvForward", "input_gradient": "GapJaxConvInputGradient",
           "kernel_gradient": "GapJaxConvKernelGradient"}
DEFAULT_CACHE = Path.home() / ".cache" / "gap_jax" / "native"
DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


class Unavailable(RuntimeError):
  pass


def _installed_file(distribution: str, suffix: str) -> Path:
  try:
    files = importlib.metadata.files(distribution) or []
  except importlib.metadata.PackageNotFoundError:
    raise Unavailable(f"{distribution} is not installed (pip install -e '.[cpu]')") from None
  for f in files:
    if str(f).endswith(suffix):
      return Path(f.locate()).resolve()
  raise Unavailable(f"{distribution} has no {suffix}")


def _build() -> Path:
  """Compiles onednn_conv.cc once per (source, jaxlib, oneDNN) and returns the shared library."""
  if platform.system() != "Linux" or platform.machine() != "x86_64":
    raise Unavailable(f"oneDNN's PyPI build is for Linux x86_64, not {platform.system()} {platform.machine()}")
  library = _installed_file("onednn-cpu-gomp", "/libdnnl.so")
  header = _installed_file("onednn-devel-cpu-gomp", "/oneapi/dnnl/dnnl.hpp")
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if compiler is None:
    raise Unavailable("no C++ compiler (g++) on PATH")
  fingerprint = hashlib.sha256(b"\0".join([
      SOURCE.read_bytes(), importlib.metadata.version("jaxlib").encode(),
      importlib.metadata.version("onednn-cpu-gomp").encode(),
      str(library).encode()])).hexdigest()[:16]
  cache = Path(os.environ.get("GAP_JAX_NATIVE_CACHE") or DEFAULT_CACHE)
  out = cache / f"gap_jax_onednn_conv_{fingerprint}.so"
  if out.exists():
    return out
  cache.mkdir(parents=True, exist_ok=True)
  # Build beside the target and rename: processes building at the same time never see a partial file.
  fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
  os.close(fd)
  cmd = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w", str(SOURCE), "-o", tmp,
         f"-I{jax.ffi.include_dir()}", f"-I{header.parents[2]}", f"-L{library.parent}", "-ldnnl",
         f"-Wl,-rpath,{library.parent}"]
  done = subprocess.run(cmd, capture_output=True, text=True)
  if done.returncode != 0:
    os.unlink(tmp)
    raise Unavailable(f"compiling {SOURCE.name} failed:\n{done.stderr[-2000:]}")
  os.replace(tmp, out)
  return out


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
  """Registers the FFI targets once: (the library, None) when they are ready, else (None, why not)."""
  try:
    lib = ctypes.CDLL(str(_build()))
  except (Unavailable, OSError) as e:
    print(f"warning: CPU convolutions run on XLA, not oneDNN (slower): {e}", file=sys.stderr)
    return None, str(e)
  for symbol in TARGETS.values():
    jax.ffi.register_ffi_target(symbol, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
  lib.GapJaxCpuIsa.restype = ctypes.c_char_p
  lib.GapJaxConvImplementations.argtypes = [ctypes.c_int64] * 8 + [ctypes.c_int, ctypes.c_char_p, ctypes.c_int64]
  return lib, None


@functools.cache  # the CPU does not change; asked at every traced convolution
def cpu_isa() -> str:
  """oneDNN's effective instruction set here (see onednn_conv.cc), or '' without oneDNN."""
  lib, _ = _load()
  return lib.GapJaxCpuIsa().decode() if lib is not None else ""


def bf16_isa() -> str:
  """oneDNN's bfloat16 instruction set on this CPU: 'AMX', 'AVX512-BF16', or '' (none, or no oneDNN)."""
  return {"avx512_core_amx": "AMX", "avx512_core_bf16": "AVX512-BF16"}.get(cpu_isa(), "")


def why_unavailable(dtype=jnp.float32) -> str | None:
  """Why convolutions of `dtype` cannot run on oneDNN here, or None when they can."""
  _, reason = _load()
  if reason is not None:
    return reason
  dtype = jnp.dtype(dtype)
  if dtype not in DTYPES:
    return f"the oneDNN binding is for {' and '.join(d.name for d in DTYPES)}, not {dtype.name}"
  if dtype == jnp.bfloat16 and not bf16_isa():
    return "this CPU has neither AMX nor AVX512-BF16, so oneDNN would emulate bfloat16 (no faster than XLA)"
  return None


def available(dtype=jnp.float32) -> bool:
  """Whether convolutions of `dtype` run on oneDNN here; says why not on stderr, once per reason, when the
  library itself loaded (its own failure was already said)."""
  reason = why_unavailable(dtype)
  if reason is not None and _load()[1] is None:
    warn_once(f"{jnp.dtype(dtype).name} CPU convolutions run on XLA, not oneDNN (slower): {reason}")
  return reason is None


@functools.cache
def warn_once(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr)


# oneDNN's implementations (impl_info_str without "x64:"; a name "a+b" is a built on b, and both must be here)
# that run. Each was compared with lax.conv (tests/test_cpu_onednn.py) and trained with (tests/test_cpu_stress.py)
# on a CPU that picks it; a shape whose implementation is missing keeps XLA's convolution. Add a name only
# after both tests pass on a CPU that picks it (tests/cpu_stress_check.py prints the names it met).
VERIFIED = frozenset({
    # AVX2: AMD EPYC Zen 3, and any x86 CPU under ONEDNN_MAX_CPU_ISA=AVX2 (2026-12-02, float32; every name
    # that the shipped models and the tests' shapes pick there).
    "jit:avx2", "jit_1x1:avx2", "brgconv:avx2", "brgconv_1x1:avx2", "brg_fwd:avx2", "gemm:jit",
    # AVX-512: AMD EPYC Zen 5 (family 26, AVX512-BF16, no AMX), uncapped and under AVX512_CORE (2026-12-02;
    # the stress check's float32 names, and the bfloat16 names of the shipped models' shapes).
    "jit:avx512_core", "jit_1x1:avx512_core", "brgconv:avx512_core", "brgconv_1x1:avx512_core",
    "brg_fwd:avx512_core",
    "jit_bf16:avx512_core_bf16", "jit_bf16_1x1:avx512_core_bf16", "brgconv:avx512_core_bf16",
    "brgconv_1x1:avx512_core_bf16", "brg_fwd:avx512_core_bf16",
    # AMX (Intel Xeon): the suite, which compares every direction with lax.conv, passed there (2026-12-01)
    # with whichever of oneDNN 3.2's kernel families it picked; the exact names were not recorded, so the
    # families are listed. On such a machine, pin them from tests/cpu_stress_check.py's last line.
    *(f"{family}:avx512_core_amx"
      for family in ("jit", "jit_1x1", "brgconv", "brgconv_1x1", "brg_fwd", "brgconv_bwd_w", "jit_bf16",
                     "jit_bf16_1x1")),
})


def implementations(x_shape, kernel_shape, padding: int, dilation: int, dtype) -> tuple[str, str, str]:
  """oneDNN's implementations of (forward, backward data, backward weights) for this convolution."""
  return _implementations(tuple(x_shape), tuple(kernel_shape), padding, dilation, jnp.dtype(dtype).name)


@functools.cache
def _implementations(x_shape, kernel_shape, padding, dilation, dtype_name):
  lib, reason = _load()
  if lib is None:
    raise Unavailable(reason)
  (b, h, w, c), (k, _, _, f) = x_shape, kernel_shape
  out = ctypes.create_string_buffer(1024)
  status = lib.GapJaxConvImplementations(b, h, w, c, f, k, padding, dilation, int(dtype_name == "bfloat16"),
                                         out, len(out))
  text = out.value.decode()
  if status != 0:
    raise Unavailable(f"oneDNN has no convolution for this shape: {text}")
  return tuple(name.removeprefix("x64:") for name in text.split(";"))


def used() -> list[tuple[str, str, str]]:
  """The implementations asked for so far in this process (a record for tests and benchmarks)."""
  return list(_USED)


_USED: set[tuple[str, str, str]] = set()


def unverified(x_shape, kernel_shape, padding: int, dilation: int, dtype) -> str | None:
  """The first of this convolution's oneDNN implementations that is not in VERIFIED, or None."""
  try:
    names = implementations(x_shape, kernel_shape, padding, dilation, dtype)
  except Unavailable as e:
    return str(e)
  _USED.add(names)
  return next((name for name in names if not set(name.split("+")) <= VERIFIED), None)


def _call(target: str, like, *operands, padding: int, dilation: int):
  if (reason := why_unavailable(like.dtype)) is not None:
    raise Unavailable(f"oneDNN convolutions are unavailable: {reason}")
  # vmap (seeds trained together) runs one call per seed: every seed has its own kernel.
  return jax.ffi.ffi_call(TARGETS[target], jax.ShapeDtypeStruct(like.shape, like.dtype),
                          vmap_method="sequential")(*operands, pad=np.int64(padding),
                                                    dilation=np.int64(dilation))


def conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """Same as kernels.plain_conv (stride 1, `padding` on every side, kernel `dilation`), float32 or bfloat16
  (x and the kernel alike, as Conv's promote_dtype makes them), CPU backend."""
  return _conv(x_BHWC, kernel_HWIO, padding, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x_BHWC, kernel_HWIO, padding: int, dilation: int):
  b, h, w, _ = x_BHWC.shape
  span = dilation * (kernel_HWIO.shape[0] - 1)
  y = jax.ShapeDtypeStruct((b, h + 2 * padding - span, w + 2 * padding - span, kernel_HWIO.shape[3]), x_BHWC.dtype)
  return _call("forward", y, x_BHWC, kernel_HWIO, padding=padding, dilation=dilation)


def _conv_fwd(x_BHWC, kernel_HWIO, padding, dilation):
  return _conv(x_BHWC, kernel_HWIO, padding, dilation), (x_BHWC, kernel_HWIO)


def _conv_bwd(padding, dilation, residuals, dy):
  x, kernel = residuals
  return (_call("input_gradient", x, dy, kernel, padding=padding, dilation=dilation),
          _call("kernel_gradient", kernel, x, dy, padding=padding, dilation=dilation))


_conv.defvjp(_conv_fwd, _conv_bwd)
