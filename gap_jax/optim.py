"""Optimizer and learning-rate schedule from config: SGD with momentum and weight decay on kernels
(the paper's recipe), an optional larger bias learning rate, and a choice of schedules."""

import jax
import optax

from gap_jax.errors import UserError


def _cosine(c, total_steps: int, steps_per_epoch: int):
  warmup = min(c.warmup_steps, max(total_steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(0.0, c.learning_rate, warmup, max(total_steps, warmup + 1))


def _constant(c, total_steps: int, steps_per_epoch: int):
  return optax.constant_schedule(c.learning_rate)


def _step(c, total_steps: int, steps_per_epoch: int):
  """Divide by 10 at each fraction of training in `lr_boundaries` (the paper's /10 drops)."""
  boundaries = {int(f * total_steps): 0.1 for f in c.lr_boundaries}
  return optax.piecewise_constant_schedule(c.learning_rate, boundaries)


SCHEDULES = {"cosine": _cosine, "constant": _constant, "step": _step}


def _sgd(c, schedule):
  return optax.sgd(schedule, momentum=c.momentum or None)


def _adam(c, schedule):
  return optax.adam(schedule)


OPTIMIZERS = {"sgd": _sgd, "adam": _adam}


def make_schedule(config, total_steps: int, steps_per_epoch: int) -> optax.Schedule:
  if config.lr_schedule not in SCHEDULES:
    raise UserError(f"unknown lr_schedule {config.lr_schedule!r}: choose one of {sorted(SCHEDULES)}")
  return SCHEDULES[config.lr_schedule](config, total_steps, steps_per_epoch)


def make_optimizer(config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Weight decay is added to the gradient of parameters named "kernel" only (as Caffe and cuda-convnet do), before the
  optimizer; bias updates are scaled by `bias_lr_multiplier`."""
  if config.optimizer not in OPTIMIZERS:
    raise UserError(f"unknown optimizer {config.optimizer!r}: choose one of {sorted(OPTIMIZERS)}")
  named = lambda name: lambda params: jax.tree_util.tree_map_with_path(lambda p, _: p[-1].key == name, params)
  is_bias, is_kernel = named("bias"), named("kernel")  # head parameters (lse r, gem p, probes) get no decay
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=is_kernel),
      OPTIMIZERS[config.optimizer](config, schedule),
      optax.masked(optax.scale(config.bias_lr_multiplier), is_bias),
  )
