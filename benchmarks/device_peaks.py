"""Dense peak FLOP/s of accelerators, for model FLOP utilization (MFU = achieved model FLOP/s / peak).

From the vendors' datasheets, without sparsity. fp32 is held to the peak of the arithmetic that JAX uses for
fp32 convolutions and matmuls by default: TF32 tensor cores on NVIDIA GPUs since Ampere, bfloat16 passes on
TPU (docs.jax.dev, "Matmul precision"). A device not listed here has no MFU unless --peak-tflops gives its peak.
"""

# (substring of jax's device_kind, checked in this order) -> {compute dtype: dense peak TFLOP/s}
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.0, "float32": 495.0}),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("H200", {"bfloat16": 989.0, "float32": 495.0}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("TPU v4", {"bfloat16": 275.0, "float32": 275.0}),
    ("TPU v5 lite", {"bfloat16": 197.0, "float32": 197.0}),  # v5e
    ("TPU v5", {"bfloat16": 459.0, "float32": 459.0}),  # v5p
    ("TPU v6 lite", {"bfloat16": 918.0, "float32": 918.0}),  # v6e
)


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  for name, peaks in PEAK_TFLOPS:
    if name in device_kind:
      return peaks.get(dtype)
  return None
