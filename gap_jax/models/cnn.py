"""The paper's "conventional CNN" baseline (NiN section 4.6): three convolutions and a locally connected
layer, whose maps feed either a fully connected layer (with dropout) or global average pooling.

The paper gives only the outline (the local layer makes 16 maps for FC, 10 for GAP); the filter sizes
here follow cuda-convnet's CIFAR-10 layers (5x5 64, 5x5 64, 3x3 64, pool 3/2 after the first two) and the
local layer is 3x3. Set `num_maps=16` with head `fc` for the paper's FC rows.
"""

from typing import Any

import flax.linen as nn

from gap_jax.models.layers import Conv, max_pool_ceil
from gap_jax.models.nin import kernel_initializer
from gap_jax.models.output import CLASSIFY_THEN_POOL, PooledOutput


def local_maps(features: int, kernel_init, dtype) -> nn.Module:
  return nn.ConvLocal(features, (3, 3), padding="SAME", kernel_init=kernel_init, dtype=dtype,
                      name="class_maps")


class ConventionalCNN(nn.Module):
  num_classes: int
  head: str = "gap"
  head_placement: str = CLASSIFY_THEN_POOL
  head_args: Any = None
  dropout: float = 0.5
  final_relu: bool = True
  kernel_init: str = "normal"
  init_std: float = 0.05
  num_maps: int | None = None
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = kernel_initializer(self.kernel_init, self.init_std)
    x = x_BHWC
    for features, k, pool in ((64, 5, True), (64, 5, True), (64, 3, False)):
      x = nn.relu(Conv(features, k, padding=k // 2, kernel_init=init, dtype=self.dtype)(x))
      if pool:
        x = max_pool_ceil(x)
    return PooledOutput(
        self.num_classes, self.head, self.head_placement, self.head_args, self.final_relu,
        num_maps=self.num_maps, make_map_layer=local_maps, kernel_init=init, dtype=self.dtype,
        name="output")(x, train)
