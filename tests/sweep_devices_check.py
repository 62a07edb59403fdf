"""The experiment command (`python -m experiments <arguments>`) on a tiny version of the experiment's quick sweep:
test_sweep_devices.py runs this file in a subprocess with JAX_NUM_CPU_DEVICES fake CPU devices, and takes
`tiny_experiment` for a sweep in its own one-device process to compare with. The runs keep the default
cpu_kernels: oneDNN's convolutions are chosen by the run's own mesh (gap_jax/cpu/__init__.py), so a one-device
mesh among 2 devices computes with the kernels a 1-device process uses."""

import dataclasses

import experiments
from test_experiments import tiny

STEPS = 60  # long enough for a SIGTERM to land while two runs train
get = experiments.get


def tiny_experiment(name):
  exp = get(name)

  def sweep(quick):
    points = tiny(exp.sweep(True))
    for p in points:
      p.config.num_train_steps = p.config.eval_every_steps = STEPS
      p.config.log_every_steps = 1  # metrics.jsonl shows a run training from its first step
    return points
  return dataclasses.replace(exp, sweep=sweep)


if __name__ == "__main__":
  from experiments.__main__ import main
  experiments.get = tiny_experiment
  main()
