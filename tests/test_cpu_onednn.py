"""oneDNN convolutions (gap_jax/cpu) compute what `lax.conv` computes, forward and both gradients, and are
used exactly where `cpu_kernels` and the verified implementations say."""

import os
import pathlib
import platform
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax import cpu
from gap_jax.cpu import onednn
from gap_jax.errors import UserError
from gap_jax.models import MODELS, kernels

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINUX_X86 = platform.system() == "Linux" and platform.machine() == "x86_64"
needs_onednn = pytest.mark.skipif(not LINUX_X86, reason="oneDNN's PyPI build is for Linux x86_64")


def _has_bf16_isa():
  return LINUX_X86 and onednn.available() and onednn.bf16_isa() != ""


needs_bf16_isa = pytest.mark.skipif(not _has_bf16_isa(), reason="this CPU has neither AMX nor AVX512-BF16")


@needs_onednn
def test_onednn_is_usable_here():
  """launch.sh and CI install the `cpu` extra: the binding must build and load, not silently fall back."""
  assert onednn.why_unavailable() is None


@needs_onednn
@pytest.mark.parametrize("b,h,w,c,f,k,pad,dilation", [
    (3, 9, 7, 5, 6, 5, 2, 1), (2, 6, 6, 4, 3, 3, 1, 1), (2, 8, 5, 3, 4, 3, 0, 1), (1, 4, 4, 2, 2, 1, 0, 1),
    (2, 5, 5, 4, 8, 5, 1, 1), (2, 7, 7, 1, 5, 5, 2, 1), (1, 3, 4, 3, 2, 3, 2, 1),
    (2, 9, 8, 3, 4, 3, 2, 2), (1, 12, 11, 2, 3, 3, 4, 4), (2, 10, 10, 4, 2, 5, 1, 2)])
def test_forward_and_gradients_match_lax_conv(b, h, w, c, f, k, pad, dilation):
  kx, kk, kg = jax.random.split(jax.random.key(b * 100 + h * 10 + c), 3)
  x = jax.random.normal(kx, (b, h, w, c))
  kernel = jax.random.normal(kk, (k, k, c, f))
  y, vjp = jax.vjp(lambda x, kernel: onednn.conv(x, kernel, pad, dilation), x, kernel)
  y_ref, vjp_ref = jax.vjp(lambda x, kernel: kernels.plain_conv(x, kernel, pad, dilation), x, kernel)
  span = dilation * (k - 1)
  assert y.shape == y_ref.shape == (b, h + 2 * pad - span, w + 2 * pad - span, f)
  g = jax.random.normal(kg, y.shape)
  for ours, ref in zip([y, *vjp(g)], [y_ref, *vjp_ref(g)]):
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))


@needs_bf16_isa
@pytest.mark.parametrize("b,h,w,c,f,k,pad,dilation", [
    (3, 9, 7, 5, 6, 5, 2, 1), (2, 8, 8, 32, 48, 3, 1, 1), (2, 7, 7, 1, 16, 5, 2, 1), (2, 6, 6, 16, 32, 1, 0, 1),
    (2, 9, 8, 3, 4, 3, 2, 2)])
def test_bfloat16_forward_and_gradients_match_a_float32_convolution_of_the_same_values(
    b, h, w, c, f, k, pad, dilation):
  """bfloat16 operands, float32 accumulation, one rounding of the result: within bfloat16's precision of
  the exact (float32) convolution of the same bfloat16 values, and of the dtype the caller gave."""
  kx, kk, kg = jax.random.split(jax.random.key(b * 100 + h * 10 + c), 3)
  bf16 = lambda a: a.astype(jnp.bfloat16)
  x, kernel = bf16(jax.random.normal(kx, (b, h, w, c))), bf16(jax.random.normal(kk, (k, k, c, f)))
  y, vjp = jax.vjp(lambda x, kernel: onednn.conv(x, kernel, pad, dilation), x, kernel)
  f32 = lambda a: a.astype(jnp.float32)
  y_ref, vjp_ref = jax.vjp(lambda x, kernel: kernels.plain_conv(x, kernel, pad, dilation),
                           f32(x), f32(kernel))
  g = bf16(jax.random.normal(kg, y.shape))
  for ours, ref in zip([y, *vjp(g)], [y_ref, *vjp_ref(f32(g))]):
    assert ours.dtype == jnp.bfloat16 and ours.shape == ref.shape
    # A sum of many products rounded once: 2^-8 of the largest magnitude, not of each element.
    np.testing.assert_allclose(f32(ours), ref, rtol=2.0 ** -7, atol=2.0 ** -7 * float(jnp.abs(ref).max()))


@needs_onednn
def test_vmap_over_seeds_gives_each_its_own_kernel():
  xs = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
  kernels_ = jax.random.normal(jax.random.key(1), (3, 3, 3, 4, 5))
  loss = lambda conv: lambda x, kernel: (conv(x, kernel, 1) ** 2).sum()
  ours = jax.jit(jax.vmap(jax.value_and_grad(loss(onednn.conv), (0, 1))))(xs, kernels_)
  ref = jax.vmap(jax.value_and_grad(loss(kernels.plain_conv), (0, 1)))(xs, kernels_)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@needs_onednn
def test_mismatched_shapes_are_an_error_not_a_crash():
  x, kernel = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 4))
  wrong = jax.ShapeDtypeStruct((1, 5, 5, 4), jnp.float32)  # padding 0 gives 3x3, not 5x5
  with pytest.raises(Exception, match="the shapes do not fit together"):
    onednn._call("forward", wrong, x, kernel, padding=0, dilation=1).block_until_ready()


@needs_bf16_isa
def test_mixed_dtypes_are_an_error_not_a_crash():
  x, kernel = jnp.ones((1, 5, 5, 2), jnp.bfloat16), jnp.ones((3, 3, 2, 4))
  y = jax.ShapeDtypeStruct((1, 5, 5, 4), jnp.bfloat16)
  with pytest.raises(Exception, match="x, the kernel and y must share one data type"):
    onednn._call("forward", y, x, kernel, padding=1, dilation=1).block_until_ready()


def _lowered(x, kernel, choice="auto", platform="cpu"):
  conv = kernels.traced_with(cpu.kernels_for(choice), lambda x, kernel: kernels.conv(x, kernel, 1))
  return jax.jit(conv).trace(x, kernel).lower(lowering_platforms=(platform,)).as_text()


@needs_onednn
def test_cpu_kernels_choose_the_convolution():
  x, kernel = jnp.ones((2, 6, 6, 4)), jnp.ones((3, 3, 4, 5))
  assert onednn.TARGETS["forward"] in _lowered(x, kernel)
  assert onednn.TARGETS["forward"] in _lowered(x, kernel, "onednn")
  # bfloat16 (compute_dtype) on oneDNN where the CPU has bfloat16 instructions; float16 always with XLA
  bf16 = _lowered(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16))
  assert ("GapJax" in bf16) == _has_bf16_isa()
  f16 = _lowered(x.astype(jnp.float16), kernel.astype(jnp.float16))
  assert "GapJax" not in f16 and "convolution" in f16
  for choice in ("xla", "plain"):
    plain = _lowered(x, kernel, choice)
    assert "GapJax" not in plain and "convolution" in plain
  with pytest.raises(UserError, match="cpu_kernels='eigen': choose one of"):
    cpu.kernels_for("eigen")


@pytest.mark.parametrize("platform", ["cuda", "tpu"])
@pytest.mark.parametrize("choice", cpu.CHOICES)
def test_other_backends_lower_the_plain_program(choice, platform):
  """Whatever cpu_kernels says, a model lowered for a GPU or TPU has none of the CPU's formulations: no
  custom call, no optimization barrier (the bias gradient's), the plain convolutions and reduce_window."""
  if choice == "onednn" and onednn.why_unavailable() is not None:
    pytest.skip("oneDNN is not usable here")
  model = MODELS["nin_mnist"](num_classes=3)
  x = jnp.ones((2, 28, 28, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  loss = lambda p, x: model.apply(p, x)[0].sum()
  step = kernels.traced_with(cpu.kernels_for(choice), jax.grad(loss))
  text = jax.jit(step).trace(params, x).lower(lowering_platforms=(platform,)).as_text()
  assert "custom_call" not in text and "optimization_barrier" not in text
  assert "convolution" in text and "reduce_window" in text
  on_cpu = jax.jit(step).trace(params, x).lower(lowering_platforms=("cpu",)).as_text()
  assert ("optimization_barrier" in on_cpu) == (choice != "plain")


@needs_onednn
def test_bfloat16_without_bf16_instructions_keeps_xla_and_says_so(monkeypatch, capsys):
  monkeypatch.setattr(onednn, "bf16_isa", lambda: "")
  onednn.warn_once.cache_clear()
  x, kernel = jnp.ones((2, 6, 6, 4), jnp.bfloat16), jnp.ones((3, 3, 4, 5), jnp.bfloat16)
  assert "GapJax" not in _lowered(x, kernel)
  assert ("warning: bfloat16 CPU convolutions run on XLA, not oneDNN (slower): this CPU has neither AMX nor "
          "AVX512-BF16") in capsys.readouterr().err
  assert onednn.TARGETS["forward"] in _lowered(x.astype(jnp.float32), kernel.astype(jnp.float32))


@needs_onednn
def test_an_unverified_implementation_keeps_xla_and_says_so(monkeypatch, capsys):
  x, kernel = jnp.ones((2, 7, 7, 4)), jnp.ones((3, 3, 4, 5))
  names = onednn.implementations(x.shape, kernel.shape, 1, 1, jnp.float32)
  assert all(set(name.split("+")) <= onednn.VERIFIED for name in names), names
  monkeypatch.setattr(onednn, "VERIFIED", onednn.VERIFIED - {names[2].split("+")[0]})
  onednn.warn_once.cache_clear()
  assert "GapJax" not in _lowered(x, kernel)
  assert (f"runs on XLA, not oneDNN: oneDNN would run {names[2]!r}, which the tests have not verified"
          in capsys.readouterr().err)


def test_xla_formulations_match_lax_conv():
  """What cpu_kernels=xla runs: a matmul for 1x1, im2col + matmul for 1-3 input channels, else lax.conv."""
  for k, pad, c, dilation in [(1, 0, 5, 1), (5, 2, 1, 1), (5, 2, 3, 1), (3, 0, 3, 1), (5, 2, 4, 1), (3, 2, 3, 2)]:
    x = jax.random.normal(jax.random.key(c), (2, 9, 8, c))
    kernel = jax.random.normal(jax.random.key(10 + c), (k, k, c, 6))
    conv = jax.jit(kernels.traced_with(cpu.kernels_for("xla"), lambda x, kernel: kernels.conv(x, kernel, pad, dilation)))
    assert "GapJax" not in conv.lower(x, kernel).as_text()
    expected = kernels.plain_conv(x, kernel, pad, dilation)
    np.testing.assert_allclose(conv(x, kernel), expected, rtol=1e-5, atol=1e-4)


def _probe(env, one_device_scope=False):
  """A fresh process (the binding is loaded once per process): is oneDNN usable, and what does Conv lower to
  (with `one_device_scope`: traced inside parallel.use_devices of the first device, as a spread sweep's run)?"""
  lower = "print('GapJax' in jax.jit(conv).lower(jnp.ones((1, 4, 4, 4)), jnp.ones((3, 3, 4, 2))).as_text())"
  if one_device_scope:
    lower = "from gap_jax import parallel\nwith parallel.use_devices(jax.devices()[:1]):\n  " + lower
  code = ("import jax, jax.numpy as jnp; from gap_jax import cpu; from gap_jax.cpu import onednn; "
          "from gap_jax.models import kernels; print(onednn.why_unavailable()); "
          "conv = kernels.traced_with(cpu.kernels_for('auto'), lambda x, k: kernels.conv(x, k, 1))\n" + lower)
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                        env={**os.environ, **env})
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout.strip().splitlines(), done.stderr


@pytest.mark.slow
@needs_onednn
def test_the_binding_builds_into_an_empty_cache_and_a_failed_build_falls_back_to_xla(tmp_path):
  (reason, uses_onednn), _ = _probe({"GAP_JAX_NATIVE_CACHE": str(tmp_path / "fresh")})
  assert (reason, uses_onednn) == ("None", "True")
  (built,) = (tmp_path / "fresh").glob("gap_jax_onednn_conv_*.so")
  assert built.stat().st_size > 0
  (*reason, uses_onednn), stderr = _probe({"GAP_JAX_NATIVE_CACHE": str(tmp_path / "broken"), "CXX": "false"})
  assert "compiling onednn_conv.cc failed" in reason[0] and uses_onednn == "False"
  assert "warning: CPU convolutions run on XLA, not oneDNN (slower): compiling onednn_conv.cc failed" in stderr
  assert not list((tmp_path / "broken").glob("*.so"))  # no partial library left to load next time


@needs_onednn
def test_several_cpu_devices_keep_xla_convolutions():
  """The custom call has no sharding rule; a batch sharded over devices must not be gathered onto each."""
  (reason, uses_onednn), _ = _probe({"JAX_NUM_CPU_DEVICES": "2"})
  assert (reason, uses_onednn) == ("None", "False")
  # ... while a run on one of them (a sweep spreading one run per device) has nothing to gather: oneDNN
  (reason, uses_onednn), _ = _probe({"JAX_NUM_CPU_DEVICES": "2"}, one_device_scope=True)
  assert (reason, uses_onednn) == ("None", "True")
