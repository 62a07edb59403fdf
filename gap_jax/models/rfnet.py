"""RFNet: a plain stack of k x k convolutions whose receptive field is a dial.

`depth` stride-1 convolutions of `width` channels with dilation `dilation`, no pooling, then the pooled
output. Its receptive field is 1 + depth * (k - 1) * dilation pixels: dilation moves it without changing
depth, parameter count or map size, which is what the receptive-field experiments need.
"""

from typing import Any

import flax.linen as nn

from gap_jax.models.nin import kernel_initializer
from gap_jax.models.output import CLASSIFY_THEN_POOL, PooledOutput


def receptive_field(depth: int, kernel: int, dilation: int) -> int:
  return 1 + depth * (kernel - 1) * dilation


class RFNet(nn.Module):
  num_classes: int
  head: str = "gap"
  head_placement: str = CLASSIFY_THEN_POOL
  head_args: Any = None
  dropout: float = 0.0  # before the class-map layer
  final_relu: bool = True
  kernel_init: str = "lecun_normal"
  init_std: float = 0.05
  depth: int = 4
  width: int = 32
  kernel: int = 3
  dilation: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = kernel_initializer(self.kernel_init, self.init_std)
    x = x_BHWC
    for _ in range(self.depth):
      x = nn.relu(nn.Conv(self.width, (self.kernel, self.kernel), padding="SAME",
                          kernel_dilation=self.dilation, kernel_init=init, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return PooledOutput(
        self.num_classes, self.head, self.head_placement, self.head_args, self.final_relu,
        kernel_init=init, dtype=self.dtype, name="output")(x, train)
