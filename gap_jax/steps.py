"""The jitted pieces of training: state creation, one SGD step, and evaluation over a whole split.

Everything random is a function of (seed, step) and the process count, never of the process's history:
the data order of an epoch comes from fold_in(order_key, epoch), augmentation and dropout from
fold_in(step_key, step).

Which examples a step trains on: the epoch's order is one permutation of all N training examples. Process p
of P holds the shard parallel.process_shard gives it (N // P examples from p * (N // P)) and takes the
examples of its shard in the order the permutation lists them; its part of the batch of step s (batch_size / P
examples) is the next block of that list, (s % steps_per_epoch) blocks in. The global batch is the processes'
parts side by side. With one process this is the permutation itself, cut into consecutive batches. Both data
routes (in device memory, streamed: gap_jax/data/stream.py) use this one order, so they train on the same
batches.
"""

import dataclasses
import threading
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from gap_jax import cpu
from gap_jax.data.augment import augment, normalize
from gap_jax.models.kernels import traced_with
from gap_jax.parallel import batch_sharded, device_owners, replicated


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any


def run_keys(seed: int):
  """(init_key, order_key, step_key) of a run: initial weights, data order, augmentation and dropout."""
  return jax.random.split(jax.random.key(seed), 3)


def jit(fn, mesh, cpu_kernels: str, **jit_args):
  """jax.jit of fn, traced with the models' operations that `cpu_kernels` names (gap_jax/cpu) and compiled
  with the CPU's compiler options where the mesh is on the CPU."""
  return jax.jit(traced_with(cpu.kernels_for(cpu_kernels), fn), compiler_options=cpu.compiler_options(mesh),
                 **jit_args)


@dataclasses.dataclass(frozen=True)
class Bound:
  """A jitted program with its last arguments bound: the training set's normalisation (mean, std), passed as
  arguments rather than closed over as constants, so that every run on data of the same shapes (another seed's
  draw of a generated dataset, another subset) reuses the traced and compiled program. Called and lowered with
  the other arguments, as the program itself is."""
  jitted: Callable
  bound: tuple

  def __call__(self, *args):
    return self.jitted(*args, *self.bound)

  def lower(self, *args):
    return self.jitted.lower(*args, *self.bound)


class Programs:
  """The jitted programs built last in this process, by a key that says what they compute: set-ups or analyses
  that compute the same thing on other values (another seed, its untrained baseline) take the programs already
  traced and compiled instead of tracing and compiling their own (seconds each on a CPU). Thread-safe."""

  def __init__(self, kept: int):
    self.kept, self._programs, self._lock = kept, {}, threading.Lock()

  def get(self, key, build: Callable):
    with self._lock:
      programs = self._programs.pop(key, None)
      if programs is None:
        programs = build()  # jax.jit objects: tracing and compiling wait for their first call
      self._programs[key] = programs  # the most recently used last
      while len(self._programs) > self.kept:
        self._programs.pop(next(iter(self._programs)))
      return programs

  def __len__(self):
    return len(self._programs)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def make_init(model, tx, image_shape, mesh, cpu_kernels: str = "auto"):
  def init(key):
    params = model.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  return jit(init, mesh, cpu_kernels, out_shardings=replicated(mesh))


def make_epoch_order(num_examples: int, mesh):
  """order(order_key, epoch) -> (devices, N // P) int32, sharded over the mesh: each device's row lists the
  rows of its process's shard in the epoch's order (module docstring)."""
  owners = device_owners(mesh)[0]
  shard = num_examples // jax.process_count()

  def local(order_key, epoch):
    permutation = jax.random.permutation(jax.random.fold_in(order_key, epoch), num_examples)
    start = jnp.asarray(owners)[jax.lax.axis_index("data")] * shard
    mine = (permutation >= start) & (permutation < start + shard)
    return (permutation[jnp.nonzero(mine, size=shard)[0]] - start)[None]

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P()), out_specs=P("data")))


def make_gather(batch_size: int, steps_per_epoch: int, mesh):
  """gather(images, labels, order, step) -> the step's global batch (uint8 images, labels), sharded over
  the mesh: each device takes its rows from its own process's shard (images, labels and order as
  parallel.per_device lays them out), so no example crosses between processes."""
  ranks = device_owners(mesh)[1]
  per_process, per_device = batch_size // jax.process_count(), batch_size // mesh.devices.size

  def local(images, labels, order, step):
    start = (step % steps_per_epoch) * per_process + jnp.asarray(ranks)[jax.lax.axis_index("data")] * per_device
    idx = jax.lax.dynamic_slice_in_dim(order[0], start, per_device)
    return images[0][idx], labels[0][idx]

  return jax.shard_map(local, mesh=mesh, in_specs=(P("data"), P("data"), P("data"), P()),
                       out_specs=(P("data"), P("data")))


def _make_update(model, tx, config):
  """update(state, images, labels, step_key, mean, std): one SGD step on a global batch of uint8 images (or
  float images already preprocessed: by the in-memory route before training, by the streamed route batch by
  batch), normalised by the training set's (mean, std) and augmented here, on device."""

  def loss_fn(params, x, y, dropout_key):
    logits, _ = model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
    return cross_entropy(logits, y).mean(), logits

  def update(state, images, y, step_key, mean, std):
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(step_key, state.step))
    x = augment(aug_key, normalize(images, mean, std), config.crop_padding, config.flip)
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, y, dropout_key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
    accuracy = (logits.argmax(-1) == y).mean()
    # The norms let the loop refuse to checkpoint a state that overflowed even while the loss was finite.
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads),
                       "param_norm": optax.tree.norm(new_state.params)}

  return update


def stacked(trees: list):
  """Several runs' pytrees (states, arguments) as one, each leaf stacked on a leading run axis: what the step
  made with `together` takes."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _jit_step(step, mesh, config, together: bool):
  """The jitted step, or with `together` jax.vmap of it: several runs' steps as one, each argument (states, data,
  keys, the data's statistics) stacked on a leading run axis (gap_jax/train.py train_together). vmap inside the
  jit: compiler options may only sit on the outermost jit."""
  return jit(jax.vmap(step) if together else step, mesh, config.cpu_kernels, donate_argnums=0,
             out_shardings=replicated(mesh))


def make_train_step(model, tx, config, steps_per_epoch: int, mesh, together: bool = False):
  """The in-memory route's step: (state, images, labels, order, step_key, mean, std) -> (state, metrics),
  gathering the step's batch on device from the shards parallel.per_device laid out."""
  gather = make_gather(config.batch_size, steps_per_epoch, mesh)
  update = _make_update(model, tx, config)

  def step(state, images, labels, order, step_key, mean, std):
    return update(state, *gather(images, labels, order, state.step), step_key, mean, std)

  return _jit_step(step, mesh, config, together)


def make_batch_step(model, tx, config, mesh, together: bool = False):
  """The streamed route's step: (state, images, labels, step_key, mean, std) -> (state, metrics) on a global
  batch that the host assembled (parallel.global_batch) and the devices preprocessed (stream.on_device)."""
  return _jit_step(_make_update(model, tx, config), mesh, config, together)


def make_evaluate(model, eval_batch: int, mesh, cpu_kernels: str = "auto"):
  """evaluate(params, images, labels, n, mean, std) -> mean loss and accuracy over the first n examples."""

  def evaluate(params, images, labels, n: int, mean, std):
    def one_batch(i):
      idx = i * eval_batch + jnp.arange(eval_batch)
      valid = idx < n
      idx = jax.lax.with_sharding_constraint(jnp.minimum(idx, n - 1), batch_sharded(mesh))
      logits, _ = model.apply({"params": params}, normalize(images[idx], mean, std), train=False)
      y = labels[idx]
      return (jnp.where(valid, cross_entropy(logits, y), 0.0).sum(),
              jnp.where(valid, logits.argmax(-1) == y, False).sum())
    losses, correct = jax.lax.map(one_batch, jnp.arange(-(-n // eval_batch)))
    return {"loss": losses.sum() / n, "accuracy": correct.sum() / n}

  return jit(evaluate, mesh, cpu_kernels, static_argnums=3)
