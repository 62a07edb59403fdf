"""Fashion-MNIST from its four IDX .gz files, no network and no TensorFlow.

Looked for in `config.data_dir`, else $GAP_JAX_DATA_DIR, else /usr/share/datasets/fashion-mnist (where
Debian's package `dataset-fashion-mnist` puts them). `config.fashion_mnist.num_train` trains on a random subset
of the training split (drawn by `config.fashion_mnist.seed`); the test split is always all 10,000.
"""

import os
from pathlib import Path

import numpy as np

from gap_jax.data.idx import read_idx
from gap_jax.data.types import Split
from gap_jax.errors import UserError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
HOW_TO_GET = ("install Debian's package (`apt-get install dataset-fashion-mnist`, files go to "
              f"{DEFAULT_DIR}) or put the four IDX .gz files from the Fashion-MNIST release in a folder "
              "and set GAP_JAX_DATA_DIR or --config.data_dir to it")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
NUM_CLASSES = 10
SPLIT_SIZES = {"train": 60_000, "test": 10_000}


def data_dir(config_dir: str | None) -> Path:
  return Path(config_dir or os.environ.get("GAP_JAX_DATA_DIR") or DEFAULT_DIR)


def load_split(folder: Path, split: str) -> Split:
  images_file, labels_file = FILES[split]
  images = read_idx(folder / images_file, 3, HOW_TO_GET)
  labels = read_idx(folder / labels_file, 1, HOW_TO_GET)
  if images.shape[1:] != (28, 28) or len(images) != len(labels):
    raise UserError(f"corrupt Fashion-MNIST {split} split in {folder}: images {images.shape}, labels "
                    f"{labels.shape}, expected (N, 28, 28) and (N,); {HOW_TO_GET}")
  if labels.max() >= NUM_CLASSES:
    raise UserError(f"corrupt Fashion-MNIST labels in {folder / labels_file}: label {labels.max()} "
                    f"is not below {NUM_CLASSES}; {HOW_TO_GET}")
  return Split(images[..., None], labels.astype(np.int32))


def subset(split: Split, num: int | None, seed: int) -> Split:
  """`num` examples drawn at random without replacement, kept in their original order; all when None."""
  if num is None:
    return split
  if num > len(split):
    raise UserError(f"fashion_mnist.num_train={num} exceeds the {len(split)} training images: lower "
                    "--config.fashion_mnist.num_train, or unset it (None) for all of them")
  keep = np.sort(np.random.default_rng(seed).choice(len(split), num, replace=False))
  return Split(split.images[keep], split.labels[keep])


def load(config) -> tuple[Split, Split, int]:
  folder = data_dir(config.data_dir)
  c = config.get("fashion_mnist") or {"num_train": None, "seed": 0}  # configs from before the section
  return subset(load_split(folder, "train"), c["num_train"], c["seed"]), load_split(folder, "test"), NUM_CLASSES
