"""Data parallelism with `jax.jit` over a 1-D ("data",) mesh of every device (all hosts): the batch is
sharded along it, parameters and the in-memory dataset are replicated. The same code runs on one device,
many devices and many hosts.

Many hosts: the same command on every host with GAP_JAX_DISTRIBUTED=1 (`./launch.sh distributed ...`);
`jax.distributed.initialize()` then finds the coordinator itself on SLURM and Cloud TPU, or takes
JAX_COORDINATOR_ADDRESS, GAP_JAX_NUM_PROCESSES and GAP_JAX_PROCESS_ID from the environment elsewhere.
Every host keeps the (small) dataset in host memory and its devices gather their own shard of each batch.
"""

import os

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


def initialize_distributed() -> None:
  """Join a multi-process run when launched as one; call before any other JAX computation."""
  if os.environ.get("GAP_JAX_DISTRIBUTED") != "1":
    return
  explicit = {}
  if "GAP_JAX_NUM_PROCESSES" in os.environ:
    explicit = {"num_processes": int(os.environ["GAP_JAX_NUM_PROCESSES"]),
                "process_id": int(os.environ["GAP_JAX_PROCESS_ID"])}
  jax.distributed.initialize(**explicit)


def is_primary() -> bool:
  """The one process that writes files other than checkpoints (orbax coordinates those itself)."""
  return jax.process_index() == 0


def replicate(host_array, mesh):
  """A host array that every process holds in full, as one global array replicated on all devices."""
  return jax.make_array_from_process_local_data(replicated(mesh), host_array, host_array.shape)
