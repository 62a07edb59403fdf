"""Network in Network (Lin, Chen, Yan, ICLR 2014): mlpconv blocks, then a pooled class-map output.

Each block is a spatial convolution followed by 1x1 convolutions ("cccp" layers), all with ReLU; max
pooling 3/2 (ceil mode) and dropout follow every block but the last. The last block's final 1x1
convolution, which makes one map per class, belongs to the output (`PooledOutput`), so the head and its
placement are one config field each.
"""

from collections.abc import Sequence

import flax.linen as nn

from gap_jax.models.layers import Conv, max_pool_ceil
from gap_jax.models.output import PooledClassifier

# (features, kernel size) of each layer, per block; the class-map 1x1 layer is added by the output.
CIFAR10_BLOCKS = (((192, 5), (160, 1), (96, 1)), ((192, 5), (192, 1), (192, 1)), ((192, 3), (192, 1)))
MNIST_BLOCKS = (((96, 5), (64, 1), (48, 1)), ((128, 5), (96, 1), (48, 1)), ((128, 5), (96, 1)))
SVHN_BLOCKS = (((128, 5), (96, 1), (64, 1)), ((320, 5), (256, 1), (128, 1)), ((384, 5), (256, 1)))


class NiN(PooledClassifier):
  blocks: Sequence[Sequence[tuple[int, int]]] = CIFAR10_BLOCKS
  kernel_init: str = "normal"  # the paper's Gaussian(0, 0.05)

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = self.kernel_init_fn
    x = x_BHWC
    for b, block in enumerate(self.blocks):
      for features, k in block:
        x = nn.relu(Conv(features, k, padding=k // 2, padding_mode=self.padding, kernel_init=init,
                         dtype=self.dtype)(x))
      if b < len(self.blocks) - 1:
        x = max_pool_ceil(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return self.pooled_output(x, train)
