"""Everything that is for the CPU backend alone: the models' operations in XLA:CPU's fastest formulations
(formulations.py), convolutions by oneDNN (onednn.py, onednn_conv.cc), the XLA:CPU compiler options, and
glibc's malloc settings (malloc.py). One config field chooses the operations (`cpu_kernels`):

- "auto" (default): oneDNN's convolution where the binding is usable and oneDNN's implementation for that
  shape is one the tests verified (onednn.VERIFIED), else XLA's; the other formulations always;
- "xla": XLA's convolutions, the other formulations too;
- "onednn": as auto, but a binding that cannot be used is an error instead of a warning;
- "plain": the models' own lax operations, nothing of this package (what GPUs and TPUs run).

Each CPU formulation is chosen when lowering (`lax.platform_dependent`): a program lowered for a GPU or a
TPU holds the plain operations only, whatever `cpu_kernels` says.
"""

import functools

import jax
from jax import lax

from gap_jax import parallel
from gap_jax.cpu import formulations, onednn
from gap_jax.errors import UserError
from gap_jax.models import kernels

CHOICES = ("auto", "xla", "onednn", "plain")

# XLA:CPU hands dots and convolutions to YNNPACK by default; with YNNPACK off, XLA's Eigen kernels run the
# NiN step faster (benchmarks/README.md). Same numerics up to float rounding.
COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


def compiler_options(mesh):
  """XLA options for jitting over `mesh`: COMPILER_OPTIONS on CPU, none elsewhere."""
  return COMPILER_OPTIONS if mesh.devices.flat[0].platform == "cpu" else None


def kernels_for(choice: str) -> kernels.Kernels:
  """The models' operations as `cpu_kernels=choice` says (see the module docstring)."""
  if choice not in CHOICES:
    raise UserError(f"cpu_kernels={choice!r}: choose one of {list(CHOICES)}")
  if choice == "plain":
    return kernels.PLAIN
  if choice == "onednn" and (reason := onednn.why_unavailable()) is not None:
    raise UserError(f"cpu_kernels='onednn' but oneDNN cannot be used here: {reason}; "
                    "use --config.cpu_kernels=auto (XLA's convolutions where oneDNN is missing)")
  return kernels.Kernels(
      choice, conv=functools.partial(_conv, use_onednn=choice != "xla"),
      add_bias=_on_cpu(formulations.add_bias, kernels.plain_add_bias),
      max_pool=lambda x, window, stride: _on_cpu(
          functools.partial(formulations.max_pool, window=window, stride=stride),
          functools.partial(kernels.plain_max_pool, window=window, stride=stride))(x))


def _on_cpu(cpu_fn, plain_fn):
  # Decided when lowering: a program traced here but compiled for another backend gets the plain one.
  return lambda *args: lax.platform_dependent(*args, cpu=cpu_fn, default=plain_fn)


def _conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1, *, use_onednn: bool):
  args = dict(padding=padding, dilation=dilation)
  fast = onednn.conv if use_onednn and _onednn_verified(x_BHWC, kernel_HWIO, padding, dilation) else formulations.conv
  return _on_cpu(functools.partial(fast, **args), functools.partial(kernels.plain_conv, **args))(x_BHWC, kernel_HWIO)


def _onednn_verified(x_BHWC, kernel_HWIO, padding, dilation) -> bool:
  # The custom call has no sharding rule: under a batch sharded over several CPU devices (tests' fake
  # meshes, multi-process CPU runs) XLA would gather the whole batch onto each, so those keep XLA's. What counts
  # is the mesh this thread's run trains on: a sweep spreading one run per device (parallel.use_devices) has
  # one-device meshes in a process with several devices, and its runs compute what a 1-device process does.
  if (jax.default_backend() != "cpu" or parallel.make_mesh().devices.size != 1
      or not onednn.available(x_BHWC.dtype)):
    return False
  name = onednn.unverified(x_BHWC.shape, kernel_HWIO.shape, padding, dilation, x_BHWC.dtype)
  if name is not None:
    onednn.warn_once(f"a {x_BHWC.shape} x {kernel_HWIO.shape} convolution (padding {padding}, dilation "
                     f"{dilation}) runs on XLA, not oneDNN: oneDNN would run {name!r}, which the tests have "
                     "not verified (gap_jax/cpu/onednn.py, VERIFIED)")
  return name is None
