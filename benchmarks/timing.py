"""Interleaved timing and analytic FLOP counts for the benchmark.

The machine is shared and its load changes by the second, so contestants are never timed in separate
phases: every round times each of them once, in an order that rotates, and ratios are taken within a
round before the median over rounds.
"""

import json
import os
import statistics
import time


def interleave(contestants: dict, rounds: int) -> dict[str, list[float]]:
  """contestants: name -> run() that returns seconds per image for one timed chunk. Returns the samples."""
  names = list(contestants)
  samples = {n: [] for n in names}
  for r in range(rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for n in order:
      samples[n].append(contestants[n]())
  return samples


def images_per_s(seconds_per_image: list[float]) -> float:
  return 1.0 / statistics.median(seconds_per_image)


def ratio(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
  """(median, min, max) over rounds of theirs_time / ours_time = our images/s over theirs."""
  per_round = [t / o for o, t in zip(ours, theirs)]
  return statistics.median(per_round), min(per_round), max(per_round)


def spread(samples: list[float]) -> float:
  """(max - min) / median of a contestant's rounds: how noisy the machine was while it ran."""
  return (max(samples) - min(samples)) / statistics.median(samples)


def timed(fn, steps: int, batch: int, sync=lambda out: None):
  """A run() for `interleave`: `steps` calls of fn(), then sync on the last output."""
  def run():
    t = time.perf_counter()
    out = None
    for _ in range(steps):
      out = fn()
    sync(out)
    return (time.perf_counter() - t) / (steps * batch)
  return run


def finish(figures: dict, json_path: str | None) -> dict:
  """A benchmark's last line (the load it ended under) and its figures written as JSON where asked."""
  print(f"load average at the end {os.getloadavg()[0]:.1f}")
  if json_path:
    with open(json_path, "w") as f:
      json.dump(figures, f, indent=2)
  return figures


def conv_layers(blocks, image_shape, num_classes):
  """(h, w, k, c_in, c_out) of every convolution of a NiN, the class-map 1x1 layer included."""
  h, w, c = image_shape
  layers = []
  for b, block in enumerate(blocks):
    for features, k in block:
      layers.append((h, w, k, c, features))
      c = features
    if b < len(blocks) - 1:
      h, w = -(-h // 2), -(-w // 2)
  layers.append((h, w, 1, c, num_classes))
  return layers


def train_flops_per_image(blocks, image_shape, num_classes) -> float:
  """Multiply-adds x 2 of the convolutions, forward (1x) and backward (2x: input and weight gradients;
  the first layer needs no input gradient). Elementwise work, pooling, the head and the optimizer are
  left out (< 1% here). Padding taps are counted as computed, as a dense convolution computes them."""
  total = 0.0
  for i, (h, w, k, c_in, c_out) in enumerate(conv_layers(blocks, image_shape, num_classes)):
    forward = 2.0 * h * w * k * k * c_in * c_out
    total += forward * (2 if i == 0 else 3)
  return total
