"""The in-memory form every data source produces."""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
  images: np.ndarray  # (N, H, W, C) uint8
  labels: np.ndarray  # (N,) int32

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train: Split
  test: Split
  num_classes: int
  mean: np.ndarray  # (C,) per-channel mean of the training images, on the [0, 1] scale
  std: np.ndarray  # (C,)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.images.shape[1:]
