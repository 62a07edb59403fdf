"""The models' convolution and pooling layers, in plain terms: the arithmetic is in gap_jax/models/kernels.py,
whose operations a backend's faster formulation may replace (gap_jax/cpu) without these layers knowing."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gap_jax.models import kernels


class Conv(nn.Module):
  """Stride-1 convolution with kernel (k, k, C, F), like `nn.Conv(F, (k, k), padding=padding,
  kernel_dilation=dilation)`; padding d(k - 1) / 2 keeps the size ('SAME')."""

  features: int
  kernel_size: int
  padding: int = 0
  dilation: int = 1
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BHWC):
    k, c = self.kernel_size, x_BHWC.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    x_BHWC, kernel, bias = nn.dtypes.promote_dtype(x_BHWC, kernel, bias, dtype=self.dtype)
    return kernels.add_bias(kernels.conv(x_BHWC, kernel, self.padding, self.dilation), bias)


def max_pool_ceil(x_BHWC, window: int = 3, stride: int = 2):
  """Max pooling with ceil-mode output size, ceil(H / stride), as cuda-convnet and Caffe pool."""
  return kernels.max_pool(x_BHWC, window, stride)
