"""Convolution and pooling layers in the formulation that runs fastest under XLA.

Each layer computes exactly what its plain counterpart computes (tests/test_layers.py compares them);
only the formulation differs. Measured on 2 CPU cores (benchmarks/README.md):
- a 1x1 convolution as one 2-D matmul runs ~2x faster (forward + backward) than `lax.conv` or a 4-D dot;
- a convolution of a 1-3 channel input as im2col + matmul beats `lax.conv` (its backward is slow there);
- max pooling as a maximum over strided slices has a ~5x faster backward than `reduce_window`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

IM2COL_MAX_IN_CHANNELS = 3


def _dense_2d(x, kernel, bias):
  """x (..., C) @ kernel (C, F) + bias, as a single 2-D matmul."""
  lead = x.shape[:-1]
  y = x.reshape(-1, x.shape[-1]) @ kernel
  return y.reshape(*lead, kernel.shape[-1]) + bias


class Conv(nn.Module):
  """Stride-1 'SAME'-style convolution with kernel (k, k, C, F), like `nn.Conv(F, (k, k), padding=pad)`."""

  features: int
  kernel_size: int
  padding: int = 0
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BHWC):
    k, c = self.kernel_size, x_BHWC.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, c, self.features), jnp.float32)
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    x_BHWC, kernel, bias = nn.dtypes.promote_dtype(x_BHWC, kernel, bias, dtype=self.dtype)
    if k == 1 and self.padding == 0:
      return _dense_2d(x_BHWC, kernel.reshape(c, self.features), bias)
    p = self.padding
    if c <= IM2COL_MAX_IN_CHANNELS:
      return _dense_2d(_patches(x_BHWC, k, p), kernel.reshape(k * k * c, self.features), bias)
    y = jax_conv(x_BHWC, kernel, p)
    return y + bias


def jax_conv(x_BHWC, kernel_HWIO, padding: int):
  """The plain formulation: `lax.conv_general_dilated`, stride 1, symmetric padding."""
  from jax import lax
  return lax.conv_general_dilated(
      x_BHWC, kernel_HWIO, (1, 1), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _patches(x_BHWC, k: int, p: int):
  """im2col: (B, H', W', k*k*C) with the feature order of a flattened (k, k, C) kernel."""
  x = jnp.pad(x_BHWC, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
  return jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)], axis=-1)


def max_pool_ceil(x_BHWC, window: int = 3, stride: int = 2):
  """Max pooling with ceil-mode output size, ceil(H / stride), as cuda-convnet and Caffe pool.

  Same result as `nn.max_pool(x, (w, w), (s, s), padding='SAME')`, computed as a maximum over the
  w*w strided slices of the padded input.
  """
  def pads(n):
    out = -(-n // stride)
    total = max((out - 1) * stride + window - n, 0)
    return out, (total // 2, total - total // 2)

  (out_h, pad_h), (out_w, pad_w) = pads(x_BHWC.shape[1]), pads(x_BHWC.shape[2])
  x = jnp.pad(x_BHWC, ((0, 0), pad_h, pad_w, (0, 0)), constant_values=-jnp.inf)
  result = None
  for i in range(window):
    for j in range(window):
      tap = x[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride, :]
      result = tap if result is None else jnp.maximum(result, tap)
  return result
