"""Two processes on localhost, each with 2 fake CPU devices, joined through jax.distributed.initialize
with a local coordinator, train a few steps, each from its own shard of the training set, and reach the
parameters of one process with 4 devices that trains on the same batches (the two processes' batches, as
the documented order defines them: tests/data_routes_check.py replay)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
OVERRIDES = ["--config.num_train_steps=6", "--config.eval_every_steps=6", "--config.eval_batch_size=64",
             "--config.eval_train_examples=64", "--config.synthetic.num_train=256",
             "--config.synthetic.num_test=64", "--config.dropout=0.5"]


def command(workdir):
  """One process of a multi-host run, as the README starts it on every host (launch.sh execs into .venv's Python:
  the signals the tests send reach the run itself)."""
  return ["bash", str(ROOT / "launch.sh"), "distributed", "--config", str(ROOT / "gap_jax/configs/synthetic.py"),
          "--workdir", str(workdir), *OVERRIDES]


# Adam turns the summation-order noise of near-zero gradients into whole learning-rate steps, so two topologies
# on the same batches part by ~1e-3 after a few steps; SGD keeps their difference at rounding size.
SGD = ["--config.optimizer=sgd", "--config.learning_rate=0.05"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_of_two_devices_match_one_process_of_four_on_their_batches(tmp_path):
  coordinator = f"localhost:{free_port()}"
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2",  # launch.sh distributed sets GAP_JAX_DISTRIBUTED
               JAX_COORDINATOR_ADDRESS=coordinator, GAP_JAX_NUM_PROCESSES="2", GAP_JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(command(tmp_path / "multi") + SGD, env=env, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  try:
    outs = [p.communicate(timeout=600) for p in procs]
  finally:  # a hung rank (e.g. one process failed before a collective) must not outlive the test
    for p in procs:
      p.kill()
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  single = subprocess.run([sys.executable, str(ROOT / "tests" / "data_routes_check.py"), "replay",
                           str(tmp_path / "multi"), "2"], env=dict(os.environ, JAX_NUM_CPU_DEVICES="4"),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]

  multi_results = json.loads((tmp_path / "multi" / "results.json").read_text())
  assert multi_results["hardware"]["process_count"] == 2
  assert multi_results["hardware"]["device_count"] == 4
  replayed = json.loads(single.stdout.strip().splitlines()[-1])
  assert replayed["steps"] == 6
  assert replayed["param_diff"] < 1e-5
  assert replayed["one_process_order_diff"] > 1e-3  # the batches one process would draw train elsewhere
