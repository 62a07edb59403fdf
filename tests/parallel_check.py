"""Run by test_parallel.py in a subprocess with 4 fake CPU devices: one training step on a 4-device mesh
and on a 1-device mesh from the same state and batch; prints the largest differences as JSON."""

import json

import jax
import numpy as np

from gap_jax import parallel
from gap_jax.configs import synthetic
from gap_jax.data import load_dataset
from gap_jax.training_setup import build_training_setup

assert jax.device_count() == 4, jax.devices()
config = synthetic.get_config()
config.dropout = 0.5  # dropout masks must not depend on how the batch is split
data = load_dataset(config)
results = {}
for name, mesh in (("four", parallel.make_mesh()), ("one", parallel.make_mesh(jax.devices()[:1]))):
  setup = build_training_setup(config, data, mesh)
  state = setup.init(jax.random.key(0))
  order = setup.epoch_order(jax.random.key(1), 0)
  losses = []
  for _ in range(3):
    state, metrics = setup.train_step(state, *setup.on_device()[:2], order, jax.random.key(2))
    losses.append(float(metrics["loss"]))
  results[name] = (losses, [np.asarray(x) for x in jax.tree.leaves(state.params)],
                   len(state.params["output"]["class_maps"]["kernel"].sharding.device_set))
(l4, p4, n4), (l1, p1, n1) = results["four"], results["one"]
print(json.dumps({"loss_diff": float(np.max(np.abs(np.subtract(l4, l1)))),
                  "param_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(p4, p1)),
                  "devices": [n4, n1], "losses": l4}))
