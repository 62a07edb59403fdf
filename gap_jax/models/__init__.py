"""Models by name. Each is a Flax module whose `apply` returns `(logits, aux)`, with
`aux["features"]` the last feature map and `aux["class_maps"]` (B, H, W, K) where the head has one.

To add a model: write a module that ends in `PooledOutput` (gap_jax/models/output.py) and add it here.
"""

import functools

import jax.numpy as jnp

from gap_jax.errors import UserError
from gap_jax.models.cnn import ConventionalCNN
from gap_jax.models.nin import CIFAR10_BLOCKS, MNIST_BLOCKS, SVHN_BLOCKS, NiN
from gap_jax.models.rfnet import RFNet

MODELS = {
    "nin": functools.partial(NiN, blocks=CIFAR10_BLOCKS),  # the CIFAR-10/100 definition
    "nin_mnist": functools.partial(NiN, blocks=MNIST_BLOCKS),
    "nin_svhn": functools.partial(NiN, blocks=SVHN_BLOCKS),
    "cnn": ConventionalCNN,
    "rfnet": RFNet,  # receptive field as a dial (dilation), for the experiments
}

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def build_model(config, num_classes: int):
  """The model that `config` names, for `num_classes` classes."""
  if config.model not in MODELS:
    raise UserError(f"unknown model {config.model!r}: choose one of {sorted(MODELS)} (config field `model`)")
  kwargs = dict(
      num_classes=num_classes, head=config.head, head_placement=config.head_placement,
      head_args=dict(config.head_args), dropout=config.dropout, final_relu=config.final_relu,
      kernel_init=config.kernel_init, init_std=config.init_std, dtype=COMPUTE_DTYPES[config.compute_dtype],
      padding=config.get("padding", "zeros"))
  kwargs.update(config.get("model_args", {}))
  return MODELS[config.model](**kwargs)
