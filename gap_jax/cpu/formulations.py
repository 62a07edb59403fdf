"""The models' operations in the formulations that XLA:CPU runs fastest; each computes what its plain
counterpart in gap_jax/models/kernels.py computes (tests/test_cpu_kernels.py compares them). Measured on 2
CPU cores in benchmarks/README.md:
- a 1x1 convolution as one 2-D matmul, and a convolution of a 1-3 channel input as im2col + matmul
  (`lax.conv`'s backward is slow there);
- the bias gradient as a matrix-vector product instead of XLA:CPU's reduce-window tree;
- max pooling as a maximum over strided slices, separable (W then H), whose backward routes each gradient
  through 2w slices instead of `reduce_window`'s select-and-scatter; bfloat16 pools in float32.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

from gap_jax.models.kernels import plain_conv

IM2COL_MAX_IN_CHANNELS = 3


def conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """One 2-D matmul for a 1x1 kernel or (im2col) an undilated 1-3 channel input, else `lax.conv`."""
  k, c, f = kernel_HWIO.shape[0], kernel_HWIO.shape[2], kernel_HWIO.shape[3]
  if k == 1 and padding == 0:
    patches = x_BHWC
  elif c <= IM2COL_MAX_IN_CHANNELS and dilation == 1:
    patches = _patches(x_BHWC, k, padding)
  else:
    return plain_conv(x_BHWC, kernel_HWIO, padding, dilation)
  y = patches.reshape(-1, k * k * c) @ kernel_HWIO.reshape(k * k * c, f)
  return y.reshape(*patches.shape[:-1], f)


def _patches(x_BHWC, k: int, p: int):
  """im2col: (B, H', W', k*k*C) with the feature order of a flattened (k, k, C) kernel."""
  x = jnp.pad(x_BHWC, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
  return jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)], axis=-1)


@jax.custom_vjp
def add_bias(y, bias):
  """y + bias, whose bias gradient (the sum of y's gradient over every location) is a matrix-vector
  product: XLA:CPU rewrites that large sum as a slow tree of reduce-windows."""
  return y + bias


def _add_bias_fwd(y, bias):
  return y + bias, None


def _add_bias_bwd(_, g):
  # In float32 also for bfloat16 g: XLA:CPU's bfloat16 matrix-vector product is slower than the conversion.
  g_2d = g.reshape(-1, g.shape[-1]).astype(jnp.float32)
  # The barrier keeps XLA from folding ones @ g back into the same reduction.
  ones = lax.optimization_barrier(jnp.ones((g_2d.shape[0],), jnp.float32))
  return g, jnp.dot(ones, g_2d).astype(g.dtype)


add_bias.defvjp(_add_bias_fwd, _add_bias_bwd)


def max_pool(x_BHWC, window: int, stride: int):
  """The plain ceil-mode max pool's values: the maximum of a square window is the maximum of its row
  maxima. bfloat16 pools in float32 (XLA:CPU's bfloat16 max/select chain is several times slower, and a
  maximum is exact in either)."""
  pool = functools.partial(_max_pool, window=window, stride=stride)
  if x_BHWC.dtype == jnp.bfloat16:
    return pool(x_BHWC.astype(jnp.float32)).astype(x_BHWC.dtype)
  return pool(x_BHWC)


def _max_pool(x_BHWC, window: int, stride: int):
  return _max_pool_axis(_max_pool_axis(x_BHWC, 2, window, stride), 1, window, stride)


def _max_pool_axis(x, axis: int, window: int, stride: int):
  n = x.shape[axis]
  out = -(-n // stride)
  total = max((out - 1) * stride + window - n, 0)
  pads = [(0, 0)] * x.ndim
  pads[axis] = (total // 2, total - total // 2)
  x = jnp.pad(x, pads, constant_values=-jnp.inf)
  result = None
  for i in range(window):
    tap = lax.slice_in_dim(x, i, i + stride * (out - 1) + 1, stride, axis=axis)
    result = tap if result is None else jnp.maximum(result, tap)
  return result
