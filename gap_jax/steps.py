"""The jitted pieces of training: state creation, one SGD step, and evaluation over a whole split.

Everything random is a function of (seed, step), never of the process's history: the data order of an
epoch comes from fold_in(order_key, epoch), augmentation and dropout from fold_in(step_key, step).
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gap_jax import cpu
from gap_jax.data.augment import augment, normalize
from gap_jax.models.kernels import traced_with
from gap_jax.parallel import batch_sharded, replicated


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


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def make_init(model, tx, image_shape, mesh, cpu_kernels: str = "auto"):
  def init(key):
    params = model.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  return jit(init, mesh, cpu_kernels, out_shardings=replicated(mesh))


def make_epoch_order(num_examples: int, mesh):
  @jax.jit
  def order(order_key, epoch):
    return jax.random.permutation(jax.random.fold_in(order_key, epoch), num_examples)
  return order


def make_train_step(model, tx, config, mean, std, steps_per_epoch: int, mesh):
  batch = config.batch_size

  def loss_fn(params, x, y, dropout_key):
    logits, _ = model.apply({"params": params}, x, train=True, rngs={"dropout": dropout_key})
    return cross_entropy(logits, y).mean(), logits

  def step(state, images, labels, order, step_key):
    start = (state.step % steps_per_epoch) * batch
    idx = jax.lax.dynamic_slice_in_dim(order, start, batch)
    idx = jax.lax.with_sharding_constraint(idx, batch_sharded(mesh))
    aug_key, dropout_key = jax.random.split(jax.random.fold_in(step_key, state.step))
    x = augment(aug_key, normalize(images[idx], mean, std), config.crop_padding, config.flip)
    y = labels[idx]
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, y, dropout_key)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state)
    accuracy = (logits.argmax(-1) == y).mean()
    # The norms let the loop refuse to checkpoint a state that overflowed even while the loss was finite.
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": optax.tree.norm(grads),
                       "param_norm": optax.tree.norm(new_state.params)}

  return jit(step, mesh, config.cpu_kernels, donate_argnums=0, out_shardings=replicated(mesh))


def make_evaluate(model, mean, std, eval_batch: int, mesh, cpu_kernels: str = "auto"):
  """evaluate(params, images, labels, n) -> mean loss and accuracy over the first n examples."""

  def evaluate(params, images, labels, n: int):
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
