"""Convolution and pooling layers in the formulation that runs fastest under XLA.

Each layer computes exactly what its plain counterpart computes (tests/test_layers.py compares them);
only the formulation differs. Measured on 2 CPU cores (benchmarks/README.md):
- a 1x1 convolution as one 2-D matmul runs ~2x faster (forward + backward) than `lax.conv` or a 4-D dot;
- a convolution of a 1-3 channel input as im2col + matmul beats `lax.conv` (its backward is slow there);
- max pooling as a maximum over strided slices, separable (W then H), has a ~3x faster backward than
  `reduce_window` or the 9-slice form;
- the bias gradient as a matrix-vector product (`add_bias`) instead of XLA:CPU's reduce-window tree;
- on the CPU backend, every convolution by oneDNN (`onednn_conv`: NiN's 5x5 and 3x3 layers forward +
  backward 1.3-1.75x faster than XLA:CPU's formulations above in float32, the 1x1 layers 0.8-1.9x; in
  bfloat16 on AMX far faster again) when it is usable; GAP_JAX_CPU_CONV=xla (read when tracing) keeps XLA's.
"""

import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from gap_jax.models import onednn_conv

IM2COL_MAX_IN_CHANNELS = 3


@jax.custom_vjp
def add_bias(y, bias):
  """y + bias, whose bias gradient (the sum of y's gradient over every location) is a matrix-vector
  product: XLA:CPU rewrites that large sum as a slow tree of reduce-windows (~12% of a NiN step)."""
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
    return add_bias(conv(x_BHWC, kernel, self.padding, self.dilation), bias)


def conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """Stride-1 convolution: oneDNN's when tracing for the CPU backend with oneDNN usable, else XLA's."""
  if not use_onednn(x_BHWC.dtype):
    return xla_conv(x_BHWC, kernel_HWIO, padding, dilation)
  # Chosen when lowering: a program traced here but compiled for another backend gets XLA's.
  args = dict(padding=padding, dilation=dilation)
  return lax.platform_dependent(x_BHWC, kernel_HWIO, cpu=functools.partial(onednn_conv.conv, **args),
                                default=functools.partial(xla_conv, **args))


def use_onednn(dtype) -> bool:
  choice = os.environ.get("GAP_JAX_CPU_CONV", "onednn")
  if choice not in ("onednn", "xla"):
    raise ValueError(f"GAP_JAX_CPU_CONV={choice!r}: set it to 'onednn' (the default) or 'xla'")
  # The custom call has no sharding rule: under a batch sharded over several CPU devices (tests' fake
  # meshes, multi-process CPU runs) XLA would gather the whole batch onto each, so those keep XLA's.
  return (choice == "onednn" and jax.default_backend() == "cpu" and jax.device_count() == 1
          and onednn_conv.available(dtype))


def xla_conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """The fastest formulation under XLA: one 2-D matmul for a 1x1 kernel or (im2col) an undilated 1-3
  channel input, else `lax.conv`."""
  k, c, f = kernel_HWIO.shape[0], kernel_HWIO.shape[2], kernel_HWIO.shape[3]
  if k == 1 and padding == 0:
    patches = x_BHWC
  elif c <= IM2COL_MAX_IN_CHANNELS and dilation == 1:
    patches = _patches(x_BHWC, k, padding)
  else:
    return jax_conv(x_BHWC, kernel_HWIO, padding, dilation)
  y = patches.reshape(-1, k * k * c) @ kernel_HWIO.reshape(k * k * c, f)
  return y.reshape(*patches.shape[:-1], f)


def jax_conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """The plain formulation: `lax.conv_general_dilated`, stride 1, symmetric padding."""
  return lax.conv_general_dilated(
      x_BHWC, kernel_HWIO, (1, 1), [(padding, padding)] * 2, rhs_dilation=(dilation, dilation),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _patches(x_BHWC, k: int, p: int):
  """im2col: (B, H', W', k*k*C) with the feature order of a flattened (k, k, C) kernel."""
  x = jnp.pad(x_BHWC, ((0, 0), (p, p), (p, p), (0, 0)))
  h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
  return jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)], axis=-1)


def max_pool_ceil(x_BHWC, window: int = 3, stride: int = 2):
  """Max pooling with ceil-mode output size, ceil(H / stride), as cuda-convnet and Caffe pool.

  Same result as `nn.max_pool(x, (w, w), (s, s), padding='SAME')`, computed separably: a maximum over
  `window` strided slices along W, then along H. The maximum of a square window is the maximum of its
  row maxima, so the values are identical; the backward pass routes each gradient through 2w slices
  instead of w*w, ~2.7x faster than the w*w-slice form (and ~3x faster than `reduce_window`).
  """
  pool = functools.partial(_max_pool, window=window, stride=stride)
  if x_BHWC.dtype != jnp.bfloat16:
    return pool(x_BHWC)
  # XLA:CPU runs the bfloat16 max/select chain (forward + backward) 4-8x slower than the float32 one, and a
  # maximum is exact in either: on the CPU backend bfloat16 pools in float32, the same values.
  in_float32 = lambda x: pool(x.astype(jnp.float32)).astype(x.dtype)
  return lax.platform_dependent(x_BHWC, cpu=in_float32, default=pool)


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
