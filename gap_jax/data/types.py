"""The in-memory form every data source produces."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, C): uint8 pixels, or float32 after host preprocessing (GCN+ZCA, LCN)
  labels: np.ndarray  # (N,) int32

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.images.shape[1:]


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split  # or, streaming, the training set's records (gap_jax.data.stream.Records)
  test: Split  # the split the training loop evaluates: the test split, or the held-out validation split
  num_classes: int
  mean: np.ndarray  # (C,) per-channel mean of uint8 training images on the [0, 1] scale; 0 for float images
  std: np.ndarray  # (C,) likewise; 1 for float images (already preprocessed, used as they are)
  eval_split: str = "test"  # what `test` holds: "test" or "validation" (never the test split then)
  preprocess: str = "standardize"  # gap_jax.data.preprocess.PREPROCESSORS

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.image_shape
