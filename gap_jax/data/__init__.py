"""Datasets by name, loaded into host memory as uint8 arrays; the training loop puts them on device.

To add a dataset: write `load(config) -> (train Split, test Split, num_classes)` and add it to DATASETS.
"""

import numpy as np

from gap_jax.data import fashion_mnist, synthetic
from gap_jax.data.types import Dataset, Split
from gap_jax.errors import UserError

DATASETS = {
    "fashion_mnist": fashion_mnist.load,
    "synthetic": synthetic.load,
}


def load_dataset(config) -> Dataset:
  if config.dataset not in DATASETS:
    raise UserError(f"unknown dataset {config.dataset!r}: choose one of {sorted(DATASETS)} "
                    "(config field `dataset`)")
  train, test, num_classes = DATASETS[config.dataset](config)
  pixels = train.images.reshape(-1, train.images.shape[-1]).astype(np.float64) / 255.0
  return Dataset(config.dataset, train, test, num_classes,
                 mean=pixels.mean(0).astype(np.float32), std=pixels.std(0).astype(np.float32))


__all__ = ["DATASETS", "Dataset", "Split", "load_dataset"]
