"""Refuse impossible config values before any compute, with one line that says how to fix them.

Names (model, head, dataset, optimizer, schedule) are checked where they are looked up; this checks
the numbers and the choices that have no lookup of their own.
"""

from gap_jax.cpu import CHOICES as CPU_KERNELS
from gap_jax.errors import UserError
from gap_jax.heads import chosen_head_args
from gap_jax.models import COMPUTE_DTYPES, chosen_model_args
from gap_jax.models.layers import check_padding
from gap_jax.models.output import PLACEMENTS

POSITIVE = ("learning_rate", "batch_size", "eval_batch_size", "log_every_steps", "checkpoints_to_keep")
NON_NEGATIVE = ("weight_decay", "warmup_steps", "crop_padding", "eval_train_examples", "momentum",
                "bias_lr_multiplier", "init_std", "progress_every_s")
POSITIVE_IF_SET = ("num_train_steps", "eval_every_steps", "checkpoint_every_steps")


def validate_config(config) -> None:
  for name in POSITIVE:
    if not config[name] > 0:
      raise UserError(f"{name}={config[name]} must be positive (--config.{name}=...)")
  for name in NON_NEGATIVE:
    if config[name] < 0:
      raise UserError(f"{name}={config[name]} must not be negative (--config.{name}=...)")
  for name in POSITIVE_IF_SET:
    if config[name] is not None and config[name] <= 0:
      raise UserError(f"{name}={config[name]} must be positive, or unset (None)")
  if config.num_train_steps is None and not config.num_epochs > 0:
    raise UserError(f"num_epochs={config.num_epochs} must be positive (or set num_train_steps)")
  if not 0 <= config.dropout < 1:
    raise UserError(f"dropout={config.dropout} must be in [0, 1)")
  if config.head_placement not in PLACEMENTS:
    raise UserError(f"unknown head_placement {config.head_placement!r}: choose one of {list(PLACEMENTS)}")
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise UserError(f"unknown compute_dtype {config.compute_dtype!r}: choose one of {sorted(COMPUTE_DTYPES)}")
  check_padding(config.padding)
  if config.cpu_kernels not in CPU_KERNELS:
    raise UserError(f"unknown cpu_kernels {config.cpu_kernels!r}: choose one of {list(CPU_KERNELS)}")
  # Only the chosen head's and model's sections are used: a value set in another's is refused.
  chosen_head_args(config)
  chosen_model_args(config)
  subset = (config.get("fashion_mnist") or {}).get("num_train")
  if subset is not None and subset <= 0:
    raise UserError(f"fashion_mnist.num_train={subset!r} must be a positive number of training images, or "
                    "unset (None) for all of them")
  if subset is not None and config.dataset == "fashion_mnist" and config.data_source == "tfds":
    raise UserError("fashion_mnist.num_train draws its subset from the local IDX files: set "
                    "--config.data_source=local (or auto), or unset fashion_mnist.num_train")
  steps = tuple(config.profile_steps)
  if steps and not (len(steps) == 2 and all(type(n) is int and n > 0 for n in steps)):
    raise UserError(f"profile_steps={steps} must be two positive integers, the first step to trace and how "
                    "many (--config.profile_steps=10,5), or () for no trace")
