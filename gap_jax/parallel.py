"""Data parallelism with `jax.jit` over a 1-D ("data",) mesh of every device (all hosts): the batch is
sharded along it, parameters and the test split are replicated. The same code runs on one device, many
devices and many hosts.

An experiment's sweep may instead train several small runs at once, each on one device of its own: a thread
enters `use_devices([device])`, and every mesh built in that thread without naming its devices spans that one
(experiments/sweep_devices.py).

The training set is split into one contiguous shard per process (`process_shard`): with several processes
each holds and reads only its own, and builds its part of every global batch from it (gap_jax/steps.py).

Many hosts: the same command on every host with GAP_JAX_DISTRIBUTED=1 (`./launch.sh distributed ...`);
`jax.distributed.initialize()` then finds the coordinator itself on SLURM and Cloud TPU, or takes
JAX_COORDINATOR_ADDRESS, GAP_JAX_NUM_PROCESSES and GAP_JAX_PROCESS_ID from the environment elsewhere.
"""

import contextlib
import os
import threading

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gap_jax.errors import UserError

_thread = threading.local()  # .devices: what use_devices set in this thread


@contextlib.contextmanager
def use_devices(devices):
  """Within this thread, `make_mesh()` spans `devices` instead of every device, and anything computed outside a
  mesh goes to the first of them (jax.default_device, also per thread): the training run, the trained model it
  loads back and what is measured of it all stay there, while other threads use other devices."""
  previous = getattr(_thread, "devices", None)
  _thread.devices = list(devices)
  try:
    with jax.default_device(_thread.devices[0]):
      yield
  finally:
    _thread.devices = previous


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A ("data",) mesh over `devices` (default: this thread's `use_devices`, else all of them, on every host)."""
  # Auto axes: XLA propagates the shardings we constrain inside the step.
  auto = (jax.sharding.AxisType.Auto,)
  devices = getattr(_thread, "devices", None) if devices is None else devices
  if devices is None:  # make_mesh orders devices by the physical topology (TPU rings)
    return jax.make_mesh((jax.device_count(),), ("data",), axis_types=auto)
  return jax.sharding.Mesh(np.asarray(devices), ("data",), axis_types=auto)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh, name: str = "batch_size") -> None:
  """The batch is split evenly over the devices of the run's mesh."""
  n = mesh.devices.size
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


def process_shard(num_examples: int) -> tuple[int, int]:
  """(start, size) of this process's shard of `num_examples` training examples: examples start..start+size-1,
  the interval grain's ShardByJaxProcess(drop_remainder=True) gives. Every shard has the same size, so with
  several processes the last num_examples % process_count examples belong to none."""
  size = num_examples // jax.process_count()
  return jax.process_index() * size, size


def device_owners(mesh) -> tuple[np.ndarray, np.ndarray]:
  """(process, rank) of each device in mesh order: the process that owns it, and its place among that
  process's devices. A process's part of a global batch is split over its devices in this order, as
  jax.make_array_from_process_local_data splits it."""
  processes = np.array([d.process_index for d in mesh.devices.flat])
  ranks = np.array([np.sum(processes[:i] == p) for i, p in enumerate(processes)])
  return processes, ranks


def per_device(shard, mesh):
  """A (devices, *shard.shape) global array in which every device holds its own process's `shard` (a host
  array: this process's shard of the training set, or its epoch order)."""
  local = int(np.sum(device_owners(mesh)[0] == jax.process_index()))
  stacked = np.broadcast_to(shard, (local, *shard.shape))  # a view: the shard is not copied on the host
  return jax.make_array_from_process_local_data(batch_sharded(mesh), stacked, (mesh.devices.size, *shard.shape))


def global_batch(local_batch, mesh, batch_size: int):
  """The global batch sharded over the mesh, from this process's rows of it (batch_size / process_count):
  they go to this process's devices, split in mesh order (`device_owners`)."""
  return jax.make_array_from_process_local_data(batch_sharded(mesh), local_batch,
                                                (batch_size, *local_batch.shape[1:]))
