"""The models' layers compute what Flax's compute, under every `cpu_kernels` choice; the CPU's formulations
compute what the plain operations compute."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax import cpu
from gap_jax.cpu import formulations
from gap_jax.models import kernels
from gap_jax.models.layers import Conv, max_pool_ceil

add_bias = formulations.add_bias
jax_conv = kernels.plain_conv


def under(choice, fn):
  """fn as the training steps trace it with cpu_kernels=choice."""
  return kernels.traced_with(cpu.kernels_for(choice), fn)


@pytest.mark.parametrize("k,pad,c_in,dilation", [(1, 0, 16, 1), (5, 2, 1, 1), (3, 1, 3, 1), (5, 2, 8, 1),
                                                  (3, 0, 4, 1), (3, 2, 4, 2), (3, 3, 1, 3)])
@pytest.mark.parametrize("choice", cpu.CHOICES)
def test_conv_matches_lax_conv(k, pad, c_in, dilation, choice):
  if choice == "onednn" and cpu.onednn.why_unavailable() is not None:
    pytest.skip("oneDNN is not usable here")
  x = jax.random.normal(jax.random.key(0), (2, 9, 9, c_in))
  layer = Conv(6, k, padding=pad, dilation=dilation, bias_init=nn.initializers.normal(1.0))
  params = layer.init(jax.random.key(1), x)
  apply = jax.jit(under(choice, layer.apply))
  ours = apply(params, x)
  kernel, bias = params["params"]["kernel"], params["params"]["bias"]
  np.testing.assert_allclose(ours, jax_conv(x, kernel, pad, dilation) + bias, rtol=1e-5, atol=1e-5)
  # and against Flax's own convolution with the same parameters
  flax_conv = nn.Conv(6, (k, k), padding=pad, kernel_dilation=dilation)
  np.testing.assert_allclose(ours, flax_conv.apply(params, x), rtol=1e-5, atol=1e-5)
  # gradients agree too
  loss = lambda p, f: (f(p, x) ** 2).sum()
  g_ours = jax.grad(loss)(params, apply)
  g_flax = jax.grad(loss)(params, flax_conv.apply)
  for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_flax)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [28, 14, 32, 16, 7, 31])
def test_max_pool_ceil_matches_flax_same_padding(size):
  x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
  expected = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
  # without ties (continuous random input) the gradient is the same subgradient
  g = lambda f: jax.grad(lambda x: (f(x) * jnp.arange(f(x).size).reshape(f(x).shape)).sum())(x)
  for choice in ("plain", "xla"):
    ours = under(choice, max_pool_ceil)(x)
    assert ours.shape == (2, -(-size // 2), -(-size // 2), 3)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_allclose(g(under(choice, max_pool_ceil)),
                               g(lambda x: nn.max_pool(x, (3, 3), (2, 2), padding="SAME")))


@pytest.mark.parametrize("window,stride,size", [(2, 2, 9), (3, 1, 8), (5, 3, 13), (3, 2, 1)])
def test_max_pool_ceil_other_windows(window, stride, size):
  x = jax.random.normal(jax.random.key(0), (2, size, size + 1, 3))
  expected = nn.max_pool(x, (window, window), (stride, stride), padding="SAME")
  np.testing.assert_array_equal(kernels.plain_max_pool(x, window, stride), expected)
  np.testing.assert_array_equal(formulations.max_pool(x, window, stride), expected)


@pytest.mark.parametrize("size", [28, 7])
def test_bfloat16_max_pool_is_the_float32_pool_of_the_same_values(size):
  """The CPU formulation pools bfloat16 in float32 (faster there): a maximum is exact, so the values are
  identical, and the gradient is the float32 one rounded once."""
  # distinct values, exact in bfloat16 ((1 + m/128) 2^e): no ties, whose gradients reduce_window splits otherwise
  i = np.random.default_rng(0).permutation(2 * size * size * 3)
  values = (1 + (i % 128) / 128) * 2.0 ** (i // 128 - 20)
  x = jnp.asarray(values.reshape(2, size, size, 3), jnp.bfloat16)
  assert len(np.unique(np.float32(x))) == x.size
  pool = lambda x: formulations.max_pool(x, 3, 2)
  ours = pool(x)
  assert ours.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.float32(ours), nn.max_pool(x.astype(jnp.float32), (3, 3), (2, 2), padding="SAME"))
  weights = jnp.arange(ours.size, dtype=jnp.float32).reshape(ours.shape) / ours.size
  g = jax.grad(lambda x: (pool(x) * weights.astype(jnp.bfloat16)).astype(jnp.float32).sum())(x)
  g_ref = jax.grad(lambda x: (nn.max_pool(x, (3, 3), (2, 2), padding="SAME") * weights).sum())(x.astype(jnp.float32))
  assert g.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.float32(g), g_ref, rtol=2.0 ** -7, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_add_bias_gradient_is_the_sum(dtype):
  """Same value as y + b; the bias gradient is the sum of g over every location, accumulated in
  float32 (for bfloat16 that is more exact than the plain bfloat16 reduction, so compare with float64)."""
  y = jax.random.normal(jax.random.key(0), (4, 5, 6, 7)).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (7,)).astype(dtype)
  g = jax.random.normal(jax.random.key(2), y.shape).astype(dtype)
  out, vjp = jax.vjp(add_bias, y, b)
  np.testing.assert_array_equal(out, y + b)
  g_y, g_b = vjp(g)
  assert g_b.dtype == dtype and g_b.shape == b.shape
  np.testing.assert_array_equal(g_y, g)
  exact = np.float64(np.float32(g)).sum(axis=(0, 1, 2))
  rounding = 2.0 ** -8 if dtype == jnp.bfloat16 else 1e-6
  np.testing.assert_allclose(np.float64(np.float32(g_b)), exact, rtol=rounding, atol=1e-5)
