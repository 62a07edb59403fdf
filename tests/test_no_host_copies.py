"""The training loop's steps copy nothing between host and device: the dataset, the epoch order, the keys
and the state stay on device, and the input pipeline (gather, normalise, augment) runs inside the jitted
step. Only the logged metrics are fetched, explicitly, with jax.device_get.

Built from the same pieces, called the same way, as gap_jax/train.py's loop. On CPU the transfer guard
sees host-to-device copies only (a device-to-host read there is not a copy), so the compiled step is
also checked for host callbacks, which would stall every step on the host.
"""

import re

import jax
import numpy as np
import pytest

from gap_jax import parallel
from gap_jax.data import load_dataset
from gap_jax.models import build_model
from gap_jax.optim import make_optimizer, make_schedule
from gap_jax.steps import make_epoch_order, make_init, make_train_step


@pytest.fixture
def loop_pieces(tiny_config):
  """What train_and_evaluate builds before its loop, for a 4-step epoch."""
  c = tiny_config
  c.batch_size = 64
  data = load_dataset(c)
  mesh = parallel.make_mesh()
  steps_per_epoch = len(data.train) // c.batch_size
  model = build_model(c, data.num_classes)
  schedule = make_schedule(c, 100, steps_per_epoch)
  tx = make_optimizer(c, schedule)
  init_key, order_key, step_key = jax.random.split(jax.random.key(c.seed), 3)
  state = make_init(model, tx, data.image_shape, mesh)(init_key)
  train_x, train_y = (parallel.replicate(a, mesh) for a in (data.train.images, data.train.labels))
  train_step = make_train_step(model, tx, c, data.mean, data.std, steps_per_epoch, mesh)
  return dict(state=state, train_x=train_x, train_y=train_y, order_key=order_key, step_key=step_key,
              train_step=train_step, epoch_order=make_epoch_order(len(data.train), mesh),
              steps_per_epoch=steps_per_epoch, data=data)


def run_steps(p, first: int, last: int):
  """The loop's body, as in train.py, for steps [first, last), crossing epoch boundaries."""
  state, order, order_epoch, pending = p["state"], None, None, []
  for step in range(first, last):
    epoch = step // p["steps_per_epoch"]
    if epoch != order_epoch:
      # The loop passes the epoch as a Python int: one 4-byte host-to-device copy per epoch, the only
      # transfer outside the logged metrics (allowed here, so that any other transfer fails the test).
      with jax.transfer_guard("allow"):
        order, order_epoch = p["epoch_order"](p["order_key"], epoch), epoch
    state, metrics = p["train_step"](state, p["train_x"], p["train_y"], order, p["step_key"])
    pending.append(metrics)
  return state, pending


def test_training_steps_copy_nothing_between_host_and_device(loop_pieces):
  p = loop_pieces
  p["state"], _ = run_steps(p, 0, 2)  # compile outside the guard (compiling may transfer constants)
  with jax.transfer_guard("disallow"):
    state, pending = run_steps(p, 2, 2 + 2 * p["steps_per_epoch"] + 1)
  fetched = jax.device_get(pending)  # the metrics, explicitly, as the loop logs them
  assert len(fetched) == 2 * p["steps_per_epoch"] + 1
  assert all(np.isfinite(m["loss"]) for m in fetched)


def test_the_guard_would_catch_a_host_batch(loop_pieces):
  """A step fed from host memory (the usual way a data pipeline creeps back in) fails under the guard:
  so the test above fails if the loop starts copying anything per step."""
  p = loop_pieces
  order = p["epoch_order"](p["order_key"], 0)
  state, _ = p["train_step"](p["state"], p["train_x"], p["train_y"], order, p["step_key"])  # compile
  with jax.transfer_guard("disallow"), pytest.raises(Exception, match="(?i)disallowed host-to-device"):
    p["train_step"](state, np.asarray(p["data"].train.images), p["train_y"], order, p["step_key"])


def test_compiled_step_has_no_host_callbacks(loop_pieces):
  p = loop_pieces
  order = p["epoch_order"](p["order_key"], 0)
  lowered = p["train_step"].lower(p["state"], p["train_x"], p["train_y"], order, p["step_key"])
  hlo = lowered.compile().as_text()
  # Instructions only (the text also lists Python source names, which may contain any word).
  found = re.findall(r'custom_call_target="[^"]*callback[^"]*"|= \S+ (?:outfeed|infeed|send|recv)\(', hlo)
  assert not found, f"the training step calls back to the host: {sorted(set(found))}"
