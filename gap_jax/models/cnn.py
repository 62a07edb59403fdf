"""The paper's "conventional CNN" baseline (NiN section 4.6): three convolutions and a locally connected
layer, whose maps feed either a fully connected layer (with dropout) or global average pooling.

The paper gives only the outline (the local layer makes 16 maps for FC, 10 for GAP); the filter sizes
here follow cuda-convnet's CIFAR-10 layers (5x5 64, 5x5 64, 3x3 64, pool 3/2 after the first two) and the
local layer is 3x3. Set `num_maps=16` with head `fc` for the paper's FC rows.
"""

import functools

import flax.linen as nn

from gap_jax.models.layers import Conv, max_pool_ceil
from gap_jax.models.output import PooledClassifier


# (features, kernel size, max-pool 3/2 after it) of the three convolutions.
CNN_LAYERS = ((64, 5, True), (64, 5, True), (64, 3, False))


FLAX_PADDING = {"zeros": "SAME", "circular": "CIRCULAR", "valid": "VALID"}


def local_maps(features: int, kernel_init, dtype, padding: str = "zeros") -> nn.Module:
  return nn.ConvLocal(features, (3, 3), padding=FLAX_PADDING[padding], kernel_init=kernel_init, dtype=dtype,
                      name="class_maps")


class ConventionalCNN(PooledClassifier):
  """`dropout` is unused: the paper's CNN has dropout only before its FC layer (head_args.fc.dropout)."""

  kernel_init: str = "normal"
  num_maps: int | None = None  # maps of the local layer; None: num_classes

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    init = self.kernel_init_fn
    x = x_BHWC
    for features, k, pool in CNN_LAYERS:
      x = nn.relu(Conv(features, k, padding=k // 2, padding_mode=self.padding, kernel_init=init,
                       dtype=self.dtype)(x))
      if pool:
        x = max_pool_ceil(x)
    return self.pooled_output(x, train, num_maps=self.num_maps,
                              make_map_layer=functools.partial(local_maps, padding=self.padding))
