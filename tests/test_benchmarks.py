"""The benchmark script runs and writes what it prints; its FLOP count matches a count by hand.

Not a timing test: nothing here depends on how fast the machine is.
"""

import json
import pathlib
import platform
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import device_peaks  # noqa: E402
import timing  # noqa: E402

from gap_jax.cpu import onednn  # noqa: E402
from gap_jax.models.nin import MNIST_BLOCKS  # noqa: E402


def test_train_flops_of_the_mnist_nin_match_a_hand_count():
  # Multiply-adds per image of each convolution (28x28 -> 14x14 -> 7x7, 'same' padding), written out.
  first = 28 * 28 * 25 * 1 * 96
  rest = (28 * 28 * 96 * 64 + 28 * 28 * 64 * 48
          + 14 * 14 * 25 * 48 * 128 + 14 * 14 * 128 * 96 + 14 * 14 * 96 * 48
          + 7 * 7 * 25 * 48 * 128 + 7 * 7 * 128 * 96 + 7 * 7 * 96 * 10)
  # Forward, input gradient and weight gradient; the first layer has no input to differentiate.
  expected = 2 * (2 * first + 3 * rest)
  assert timing.train_flops_per_image(MNIST_BLOCKS, (28, 28, 1), 10) == expected


@pytest.mark.slow
def test_bench_runs_and_writes_json(tmp_path):
  out = tmp_path / "bench.json"
  done = subprocess.run(
      [sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--parts", "nin,pipeline",
       "--models", "nin_mnist", "--variants", "train,bf16", "--steps", "1", "--rounds", "2", "--batch", "8",
       "--no-torch", "--peak-tflops", "0.5", "--json", str(out)],
      capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "img/s" in done.stdout and f"wrote {out}" in done.stdout
  result = json.loads(out.read_text())
  assert [(r["model"], r["head"], r["who"]) for r in result["rows"]] == [
      ("nin_mnist", "gap", "ours[train]"), ("nin_mnist", "gap", "ours[bf16]")]
  for row in result["rows"]:
    assert row["img_s"] > 0 and row["best"] >= row["img_s"] and row["compile_s"] > 0
    assert "vs_torch" not in row  # --no-torch: no ratio
    assert row["mfu"] == pytest.approx(row["gflop_s"] / 500)  # 0.5 TFLOP/s = 500 GFLOP/s
  (pipe,) = result["pipeline"]
  assert pipe["model"] == "nin_mnist" and pipe["pipeline_img_s"] > 0 and pipe["step_img_s"] > 0
  assert result["machine"]["malloc"] == "reuse" and result["args"]["batch"] == 8
  # the machine line names the CPU's instruction sets (those that choose its kernels) and oneDNN's
  flags = pathlib.Path("/proc/cpuinfo").read_text() if pathlib.Path("/proc/cpuinfo").exists() else ""
  assert ("avx2" in result["machine"]["cpu_isa"].split(";")[0]) == (" avx2 " in flags)
  assert f"oneDNN ISA {onednn.cpu_isa() or 'none'}" in result["machine"]["cpu_isa"]
  assert result["machine"]["cpu_isa"] in done.stdout.splitlines()[0]


def test_bench_rejects_an_unknown_part():
  done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--parts", "speed"],
                        capture_output=True, text=True, timeout=120, cwd=ROOT)
  assert done.returncode == 2 and "unknown part or variant ['speed']" in done.stderr


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="needs oneDNN, whose PyPI build is for Linux x86_64")
@pytest.mark.slow
def test_conv_layer_bench_prints_a_row_per_layer():
  # In bfloat16 where the CPU has bf16 instructions (the --dtype path), else float32: one run, to keep CI short.
  dtype = "bfloat16" if onednn.available("bfloat16") else "float32"
  done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "conv_layers.py"), "--models", "nin_mnist",
                         "--rounds", "1", "--batch", "2", "--dtype", dtype],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"batch 2, {dtype}," in done.stdout
  rows = [line for line in done.stdout.splitlines() if line.startswith("| nin_mnist")]
  assert len(rows) == len(MNIST_BLOCKS[0]) + len(MNIST_BLOCKS[1]) + len(MNIST_BLOCKS[2]) + 1  # + class maps
  assert rows[0].startswith("| nin_mnist 28x28, 1 -> 96, 5x5 |") and rows[-1].startswith("| nin_mnist 7x7, 96 -> 10, 1x1 |")


def test_device_peaks_by_device_kind():
  assert device_peaks.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.0
  assert device_peaks.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0  # not the SXM part's
  assert device_peaks.peak_tflops("NVIDIA H200", "float32") == 495.0  # TF32, JAX's default for fp32 on GPU
  assert device_peaks.peak_tflops("TPU v5 lite", "bfloat16") == 197.0  # v5e, not v5p
  assert device_peaks.peak_tflops("cpu", "float32") is None


@pytest.mark.slow
def test_workers_bench_times_both_ways_and_writes_json(tmp_path):
  import os
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("needs 2 CPU cores")
  out = tmp_path / "workers.json"
  done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "workers.py"), "--workers", "2", "--steps", "1",
                         "--rounds", "1", "--setups", "rfnet_shapes", "--json", str(out)],
                        capture_output=True, text=True, timeout=600, cwd=ROOT)
  assert done.returncode == 0, done.stderr[-3000:]
  figures = json.loads(out.read_text())["setups"]["rfnet_shapes"]
  assert figures["one_process_images_per_s"] > 0 and figures["processes_images_per_s"] > 0
  assert figures["processes_over_one"][0] == pytest.approx(
      figures["processes_images_per_s"] / figures["one_process_images_per_s"])  # one round: the ratio of medians
  assert "2 processes" in done.stdout and "processes/one" in done.stdout
