"""RFNet: a plain stack of k x k convolutions whose receptive field is a dial.

`depth` stride-1 convolutions of `width` channels with dilation `dilation`, no pooling, then the pooled
output. Its receptive field is 1 + depth * (k - 1) * dilation pixels: dilation moves it without changing
depth, parameter count or map size, which is what the receptive-field experiments need.

One dilation d > 1 in every layer makes the network d x d independent networks on subsampled images
("gridding": only pixels on a lattice of pitch d reach a unit). `dilations`, one rate per layer, gives mixed
rates instead (Wang et al. 2018, hybrid dilated convolution): with rates such as (1, 2, 3, 4) every pixel of
the field reaches the unit (`gridded` says whether some do not).
"""

from collections.abc import Sequence

import numpy as np


import flax.linen as nn

from gap_jax.errors import UserError
from gap_jax.models.layers import Conv
from gap_jax.models.output import PooledClassifier


def receptive_field(depth: int, kernel: int, dilation: int = 1, dilations: Sequence[int] | None = None) -> int:
  rates = [dilation] * depth if dilations is None else dilations
  return 1 + (kernel - 1) * int(sum(rates))


def footprint(kernel: int, dilations: Sequence[int]) -> np.ndarray:
  """Along one axis, how many paths lead from each input pixel of the field to the unit: the full
  convolution of each layer's dilated kernel of ones."""
  paths = np.ones(1, np.int64)
  for d in dilations:
    taps = np.zeros((kernel - 1) * d + 1, np.int64)
    taps[::d] = 1
    paths = np.convolve(paths, taps)
  return paths


def gridded(kernel: int, dilations: Sequence[int]) -> bool:
  """True if some pixel inside the receptive field has no path to the unit (a lattice of holes)."""
  return bool((footprint(kernel, dilations) == 0).any())


class RFNet(PooledClassifier):
  dropout: float = 0.0  # before the class-map layer
  depth: int = 4
  width: int = 32
  kernel: int = 3
  dilation: int = 1
  dilations: tuple[int, ...] | None = None  # one rate per layer (overrides depth and dilation)

  def __post_init__(self):
    super().__post_init__()
    if self.kernel % 2 == 0:
      raise UserError(f"rfnet kernel={self.kernel}: use an odd kernel, so that 'same' padding is symmetric")
    if self.dilations is not None and (len(self.dilations) == 0 or min(self.dilations) < 1):
      raise UserError(f"rfnet dilations={self.dilations}: give one positive rate per layer, e.g. (1, 2, 3, 4)")

  @property
  def rates(self) -> tuple[int, ...]:
    return (self.dilation,) * self.depth if self.dilations is None else tuple(self.dilations)

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = self.kernel_init_fn
    x = x_BHWC
    for d in self.rates:
      x = nn.relu(Conv(self.width, self.kernel, padding=d * (self.kernel - 1) // 2, dilation=d,  # 'same'
                       padding_mode=self.padding, kernel_init=init, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return self.pooled_output(x, train)
