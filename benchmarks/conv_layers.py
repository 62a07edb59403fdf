"""Every convolution of the NiNs alone: XLA's formulation, oneDNN's (what training runs on CPU), PyTorch's.

Run: ./launch.sh bench-conv [--models nin_mnist,nin] [--rounds 10] [--batch 128] [--dtype bfloat16]
Prints a Markdown table: per layer, ms for the forward pass and for the forward pass with the gradients a
training step needs (no input gradient for the first layer), and XLA's time over oneDNN's. Interleaved
rounds, medians (benchmarks/README.md, "Noise").
"""

import argparse
import os
import sys

import jax
import numpy as np

from gap_jax.cpu import COMPILER_OPTIONS, formulations, onednn
from gap_jax.models import MODELS

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402

try:
  import torch
except ImportError:
  torch = None

IMAGES = {"nin": ((32, 32, 3), 10), "nin_mnist": ((28, 28, 1), 10)}


def jax_runners(conv, x, kernel, dy, padding, first: bool):
  forward = jax.jit(lambda x, kernel: conv(x, kernel, padding), compiler_options=COMPILER_OPTIONS)

  def step(x, kernel, dy):
    y, vjp = jax.vjp(lambda x, kernel: conv(x, kernel, padding), x, kernel)
    dx, dkernel = vjp(dy)
    return (y, dkernel) if first else (y, dx, dkernel)
  step = jax.jit(step, compiler_options=COMPILER_OPTIONS)
  return (timing.timed(lambda: forward(x, kernel), 1, 1, jax.block_until_ready),
          timing.timed(lambda: step(x, kernel, dy), 1, 1, jax.block_until_ready))


def torch_runners(x, kernel, dy, padding, first: bool):
  dtype = getattr(torch, x.dtype.name)
  as_torch = lambda a: torch.from_numpy(np.array(a, np.float32)).to(dtype)  # a writable copy
  nchw = lambda a: as_torch(a).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
  xt = nchw(x).requires_grad_(not first)
  kt = as_torch(kernel).permute(3, 2, 0, 1).contiguous().requires_grad_()
  dyt = nchw(dy)

  def forward():
    with torch.no_grad():
      torch.nn.functional.conv2d(xt, kt, padding=padding)

  def step():
    xt.grad = kt.grad = None
    torch.nn.functional.conv2d(xt, kt, padding=padding).backward(dyt)
  return timing.timed(forward, 1, 1), timing.timed(step, 1, 1)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--models", default="nin_mnist,nin")
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
  args = p.parse_args(argv)
  if not onednn.available(args.dtype):
    raise SystemExit(f"oneDNN {args.dtype} convolutions are unavailable: {onednn.why_unavailable(args.dtype)}")
  if torch is not None:
    torch.set_num_threads(os.cpu_count())
  print(f"batch {args.batch}, {args.dtype}, median of {args.rounds} interleaved rounds; ms forward / forward + gradients")
  print("| layer | XLA | oneDNN | PyTorch | XLA / oneDNN (with gradients) |\n|---|---|---|---|---|")
  for model in args.models.split(","):
    if model not in IMAGES:
      raise SystemExit(f"unknown model {model!r}: choose of {sorted(IMAGES)}")
    image_shape, classes = IMAGES[model]
    blocks = MODELS[model].keywords["blocks"]
    for i, (h, w, k, c_in, c_out) in enumerate(timing.conv_layers(blocks, image_shape, classes)):
      keys = jax.random.split(jax.random.key(i), 3)
      x = jax.random.normal(keys[0], (args.batch, h, w, c_in), args.dtype)
      kernel = (0.05 * jax.random.normal(keys[1], (k, k, c_in, c_out))).astype(args.dtype)
      dy = jax.random.normal(keys[2], (args.batch, h, w, c_out), args.dtype)
      runners = {"xla": jax_runners(formulations.conv, x, kernel, dy, k // 2, i == 0),
                 "onednn": jax_runners(onednn.conv, x, kernel, dy, k // 2, i == 0)}
      if torch is not None:
        runners["torch"] = torch_runners(x, kernel, dy, k // 2, i == 0)
      contestants = {f"{who} {part}": run for who, pair in runners.items() for part, run in zip("fs", pair)}
      for run in contestants.values():  # compile and warm up
        run()
      ms = {n: 1000 * np.median(s) for n, s in timing.interleave(contestants, args.rounds).items()}
      cell = lambda who: f"{ms[who + ' f']:.1f} / {ms[who + ' s']:.1f}" if who + " f" in ms else "-"
      print(f"| {model} {h}x{w}, {c_in} -> {c_out}, {k}x{k} | {cell('xla')} | {cell('onednn')} | "
            f"{cell('torch')} | {ms['xla s'] / ms['onednn s']:.2f}x |", flush=True)


if __name__ == "__main__":
  main()
