"""The three operations of the models whose fastest formulation depends on the backend: convolution, bias
add and max pooling. Models call them here; by default they are the plain lax operations, which is what
every backend runs unless told otherwise.

A faster set for one backend (gap_jax/cpu: the CPU's, chosen by the config field `cpu_kernels`) replaces
them while a function is traced: `traced_with(kernels, fn)` is what the training steps jit. The models
themselves never name a backend.
"""

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Callable

import jax.numpy as jnp
from jax import lax


def plain_conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  """Stride-1 convolution, `padding` on every side, kernel `dilation`: `lax.conv_general_dilated`."""
  return lax.conv_general_dilated(
      x_BHWC, kernel_HWIO, (1, 1), [(padding, padding)] * 2, rhs_dilation=(dilation, dilation),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def plain_add_bias(y, bias):
  return y + bias


def plain_max_pool(x_BHWC, window: int, stride: int):
  """Max pooling with ceil-mode output size ceil(H / stride), as cuda-convnet and Caffe pool: 'SAME'
  padding with -inf, which pads (out - 1) * stride + window - H, the smaller half before."""
  return lax.reduce_window(x_BHWC, -jnp.inf, lax.max, (1, window, window, 1), (1, stride, stride, 1), "SAME")


@dataclasses.dataclass(frozen=True)
class Kernels:
  """One formulation of each operation, with the same signatures and results as the plain ones."""
  name: str
  conv: Callable = plain_conv
  add_bias: Callable = plain_add_bias
  max_pool: Callable = plain_max_pool


PLAIN = Kernels("plain")
_ACTIVE = contextvars.ContextVar("gap_jax_kernels", default=PLAIN)


@contextlib.contextmanager
def using(kernels: Kernels):
  token = _ACTIVE.set(kernels)
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def traced_with(kernels: Kernels, fn: Callable) -> Callable:
  """fn, computing with `kernels` whenever it runs (or is traced: what jit sees)."""
  @functools.wraps(fn)
  def wrapped(*args, **kwargs):
    with using(kernels):
      return fn(*args, **kwargs)
  return wrapped


def conv(x_BHWC, kernel_HWIO, padding: int, dilation: int = 1):
  return _ACTIVE.get().conv(x_BHWC, kernel_HWIO, padding, dilation)


def add_bias(y, bias):
  return _ACTIVE.get().add_bias(y, bias)


def max_pool(x_BHWC, window: int, stride: int):
  return _ACTIVE.get().max_pool(x_BHWC, window, stride)
