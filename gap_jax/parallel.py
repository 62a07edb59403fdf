"""Data parallelism with `jax.jit` over a 1-D ("data",) mesh of every device (all hosts): the batch is
sharded along it, parameters and the in-memory dataset are replicated. The same code runs on one device,
many devices and many hosts."""

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gap_jax.errors import UserError


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A ("data",) mesh over `devices` (default: all of them, on every host)."""
  # Auto axes: XLA propagates the shardings we constrain inside the step.
  auto = (jax.sharding.AxisType.Auto,)
  if devices is None:  # make_mesh orders devices by the physical topology (TPU rings)
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=auto)
  return jax.sharding.Mesh(np.asarray(devices), ("data",), axis_types=auto)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, name: str = "batch_size") -> None:
  n = jax.device_count()
  if batch_size % n:
    raise UserError(f"{name}={batch_size} is not divisible by the {n} devices: choose a multiple of {n}")
