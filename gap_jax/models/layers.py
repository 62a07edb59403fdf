"""The models' convolution and pooling layers, in plain terms: the arithmetic is in gap_jax/models/kernels.py,
whose operations a backend's faster formulation may replace (gap_jax/cpu) without these layers knowing."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gap_jax.errors import UserError
from gap_jax.models import kernels

# How a convolution sees beyond the border: zeros (position leaks in once a field reaches the border),
# the image wrapped around (a torus: no border, exact equivariance to cyclic shifts), or not at all (the map
# shrinks by the kernel's span).
PADDINGS = ("zeros", "circular", "valid")


def check_padding(padding: str) -> None:
  if padding not in PADDINGS:
    raise UserError(f"unknown padding {padding!r}: choose one of {list(PADDINGS)} (config field `padding`)")


class Conv(nn.Module):
  """Stride-1 convolution with kernel (k, k, C, F), like `nn.Conv(F, (k, k), padding=padding,
  kernel_dilation=dilation)`; padding d(k - 1) / 2 keeps the size ('SAME'). `padding_mode` (PADDINGS) says
  what fills the `padding` pixels: zeros, the image wrapped around, or nothing ('valid': no padding)."""

  features: int
  kernel_size: int
  padding: int = 0
  dilation: int = 1
  padding_mode: str = "zeros"
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BHWC):
    k, c = self.kernel_size, x_BHWC.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    x_BHWC, kernel, bias = nn.dtypes.promote_dtype(x_BHWC, kernel, bias, dtype=self.dtype)
    check_padding(self.padding_mode)
    padding = self.padding if self.padding_mode == "zeros" else 0
    if self.padding_mode == "circular" and self.padding:
      p = self.padding
      x_BHWC = jnp.pad(x_BHWC, ((0, 0), (p, p), (p, p), (0, 0)), mode="wrap")
    return kernels.add_bias(kernels.conv(x_BHWC, kernel, padding, self.dilation), bias)


def max_pool_ceil(x_BHWC, window: int = 3, stride: int = 2):
  """Max pooling with ceil-mode output size, ceil(H / stride), as cuda-convnet and Caffe pool."""
  return kernels.max_pool(x_BHWC, window, stride)
