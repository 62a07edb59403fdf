"""RFNet: a plain stack of k x k convolutions whose receptive field is a dial.

`depth` stride-1 convolutions of `width` channels with dilation `dilation`, no pooling, then the pooled
output. Its receptive field is 1 + depth * (k - 1) * dilation pixels: dilation moves it without changing
depth, parameter count or map size, which is what the receptive-field experiments need.
"""


import flax.linen as nn

from gap_jax.errors import UserError
from gap_jax.models.layers import Conv
from gap_jax.models.output import PooledClassifier


def receptive_field(depth: int, kernel: int, dilation: int) -> int:
  return 1 + depth * (kernel - 1) * dilation


class RFNet(PooledClassifier):
  dropout: float = 0.0  # before the class-map layer
  depth: int = 4
  width: int = 32
  kernel: int = 3
  dilation: int = 1

  def __post_init__(self):
    super().__post_init__()
    if self.kernel % 2 == 0:
      raise UserError(f"rfnet kernel={self.kernel}: use an odd kernel, so that 'same' padding is symmetric")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = self.kernel_init_fn
    x = x_BHWC
    pad = self.dilation * (self.kernel - 1) // 2  # 'same'
    for _ in range(self.depth):
      x = nn.relu(Conv(self.width, self.kernel, padding=pad, dilation=self.dilation, padding_mode=self.padding,
                       kernel_init=init, dtype=self.dtype)(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return self.pooled_output(x, train)
