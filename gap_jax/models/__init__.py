"""Models by name. Each is a Flax module whose `apply` returns `(logits, aux)`, with
`aux["features"]` the last feature map and `aux["class_maps"]` (B, H, W, K) where the head has one.

To add a model: subclass `PooledClassifier` (gap_jax/models/output.py: the fields every model takes from the
top of the config), end in its `pooled_output`, and add it here. Its own dataclass fields, each with a default,
are its hyper-parameters: the config gets a section `model_args.<model>` of them (gap_jax/configs/sections.py),
so `--config.model_args.<model>.<field>=...` sets one.
"""

import dataclasses
import functools

import jax.numpy as jnp

from gap_jax.configs import sections
from gap_jax.errors import UserError
from gap_jax.heads import chosen_head_args
from gap_jax.models.cnn import ConventionalCNN
from gap_jax.models.nin import CIFAR10_BLOCKS, MNIST_BLOCKS, SVHN_BLOCKS, NiN
from gap_jax.models.output import PooledClassifier
from gap_jax.models.rfnet import RFNet

MODELS = {
    "nin": functools.partial(NiN, blocks=CIFAR10_BLOCKS),  # the CIFAR-10/100 definition
    "nin_mnist": functools.partial(NiN, blocks=MNIST_BLOCKS),
    "nin_svhn": functools.partial(NiN, blocks=SVHN_BLOCKS),
    "cnn": ConventionalCNN,
    "rfnet": RFNet,  # receptive field as a dial (dilation), for the experiments
}

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}

# Set from the top of the config for every model (build_model), so not part of any model's section.
SHARED_FIELDS = tuple(f.name for f in dataclasses.fields(PooledClassifier))


def model_arg_sections():
  """config.model_args: one section per model, with the model's own defaults."""
  return sections.sections(MODELS, SHARED_FIELDS)


def chosen_model_args(config) -> dict:
  """The chosen model's section of `config.model_args`; a value set in another model's section is refused."""
  if config.model not in MODELS:
    raise UserError(f"unknown model {config.model!r}: choose one of {sorted(MODELS)} (config field `model`)")
  return sections.chosen_args(config, "model_args", "model", MODELS, SHARED_FIELDS)


def build_model(config, num_classes: int):
  """The model that `config` names, for `num_classes` classes."""
  model_args = chosen_model_args(config)
  kwargs = dict(
      num_classes=num_classes, head=config.head, head_placement=config.head_placement,
      head_args=chosen_head_args(config), dropout=config.dropout, final_relu=config.final_relu,
      kernel_init=config.kernel_init, init_std=config.init_std, dtype=COMPUTE_DTYPES[config.compute_dtype],
      padding=config.get("padding", "zeros"))
  return MODELS[config.model](**kwargs, **model_args)
