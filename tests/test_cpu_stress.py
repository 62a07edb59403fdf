"""No crash from the native CPU path: the real training loop of every shipped model, with oneDNN, in a
subprocess per oneDNN instruction-set cap (the kernels an AVX2 and an AVX-512 CPU get, where this CPU has
them, and this CPU's own). With oneDNN's library-managed scratchpad this crashed (SIGSEGV) in the first
run on an AVX2 CPU."""

import os
import pathlib
import platform
import signal
import subprocess
import sys

import pytest

from cpu_stress_check import RUNS

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="oneDNN's PyPI build is for Linux x86_64")
@pytest.mark.slow
@pytest.mark.parametrize("cap", ["AVX2", "AVX512_CORE", "uncapped"])
def test_every_model_trains_with_onednn_without_a_crash(cap):
  env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
  if cap != "uncapped":
    env["ONEDNN_MAX_CPU_ISA"] = cap
  done = subprocess.run([sys.executable, str(ROOT / "tests" / "cpu_stress_check.py")], capture_output=True,
                        text=True, timeout=900, cwd=ROOT, env=env)
  started = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("start ")]
  if done.returncode < 0:
    pytest.fail(f"{started[-1] if started else 'start-up'} under ONEDNN_MAX_CPU_ISA={cap} died of "
                f"{signal.Signals(-done.returncode).name}:\n{done.stderr[-2000:]}")
  assert done.returncode == 0, f"under ONEDNN_MAX_CPU_ISA={cap}, in {started[-1:]}:\n{done.stderr[-3000:]}"
  finished = [line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.startswith("done ")]
  assert finished == list(RUNS)
  assert "oneDNN implementations: ['" in done.stdout  # oneDNN was asked, not bypassed
