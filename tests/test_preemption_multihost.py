"""Coherent preemption: two processes on localhost (2 fake CPU devices each) train together; SIGTERM reaches
only one of them. Both must save the same step and exit 0, and running the same command again must end at
the parameters of an uninterrupted run, bit for bit."""

import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from gap_jax.trained import load_trained
from test_multihost import ROOT, command, free_port
from test_reliability import metrics_steps

STEPS = ["--config.num_train_steps=40", "--config.eval_every_steps=40", "--config.log_every_steps=1"]


def launch(workdir, coordinator):
  procs = []
  for pid in range(2):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_COORDINATOR_ADDRESS=coordinator,
               GAP_JAX_NUM_PROCESSES="2", GAP_JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen(command(workdir) + STEPS, env=env, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  return procs


def finish(procs):
  try:
    outs = [p.communicate(timeout=600) for p in procs]
  finally:  # a hung rank must not outlive the test
    for p in procs:
      p.kill()
  return [(p.returncode, out + err) for p, (out, err) in zip(procs, outs)]


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path):
  workdir = tmp_path / "multi"
  procs = launch(workdir, f"localhost:{free_port()}")
  end = time.time() + 300
  while time.time() < end and not any(m["step"] >= 3 for m in metrics_steps(workdir)) and procs[0].poll() is None:
    time.sleep(0.01)
  procs[1].send_signal(signal.SIGTERM)  # the non-primary process only
  done = finish(procs)
  for code, log in done:
    assert code == 0, log[-3000:]
  saved = {int(log.split("checkpoint saved at step ")[1].split(";")[0]) for _, log in done
           if "checkpoint saved at step" in log}
  assert len(saved) == 1, [log[-1500:] for _, log in done]
  (step,) = saved
  assert 3 <= step < 40 and (workdir / "checkpoints" / str(step) / "commit_success.txt").exists()
  assert not (workdir / "results.json").exists()

  for code, log in finish(launch(workdir, f"localhost:{free_port()}")):  # the same command resumes
    assert code == 0, log[-3000:]
  for code, log in finish(launch(tmp_path / "uninterrupted", f"localhost:{free_port()}")):
    assert code == 0, log[-3000:]
  resumed = json.loads((workdir / "results.json").read_text())
  assert resumed["resumed_from_step"] == step
  a = jax.tree.leaves(jax.device_get(load_trained(workdir).state.params))
  b = jax.tree.leaves(jax.device_get(load_trained(tmp_path / "uninterrupted").state.params))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)  # the same two processes, uninterrupted: bit for bit
