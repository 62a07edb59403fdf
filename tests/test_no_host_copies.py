"""The training loop copies nothing between host and device once it runs: the dataset, the epoch order, the
keys and the state stay on device, and the input pipeline (gather, normalise, augment) runs inside the
jitted step. Only the logged metrics are fetched, explicitly, with jax.device_get.

The real loop (train_and_evaluate) runs under jax.transfer_guard("disallow") from its third step to its end,
evaluations, checkpoints and the final scoring included; its set-up is the one build_training_setup makes,
wrapped only to switch the guard on. On CPU the guard sees host-to-device copies only (a device-to-host read
there is not a copy), so the compiled step is also checked for host callbacks, which would stall every step.
"""

import contextlib
import dataclasses
import re

import jax
import numpy as np
import pytest

from gap_jax import train
from gap_jax.steps import run_keys
from gap_jax.training_setup import build_training_setup

GUARD_FROM_CALL = 3  # the first steps compile outside the guard (compiling may transfer constants)


@pytest.fixture
def config(tiny_config):
  """4-step epochs; the guarded part crosses two epoch boundaries, two evaluations and two saves."""
  c = tiny_config
  c.batch_size, c.eval_every_steps, c.checkpoint_every_steps = 64, None, 5
  c.num_train_steps = GUARD_FROM_CALL - 1 + 2 * 4 + 1
  return c


def allowed(fn, calls: list):
  def call(*args):
    calls.append(args)
    with jax.transfer_guard("allow"):
      return fn(*args)
  return call


def run_guarded(config, workdir, monkeypatch, feed=lambda args: args):
  """train_and_evaluate(config, workdir) with the guard on from the GUARD_FROM_CALL-th step; `feed` may
  change the step's arguments. Returns (results, the number of guarded steps, the epoch_order calls).

  Allowed, as the loop passes them as Python ints: the epoch number (a 4-byte copy once per epoch) and the
  step whose learning rate is logged (once per log line)."""
  guard, steps, orders = contextlib.ExitStack(), [], []

  def build_with_guard(config, data=None):
    run = build_training_setup(config, data)

    def step(*args):
      steps.append(args)
      if len(steps) == GUARD_FROM_CALL:
        guard.enter_context(jax.transfer_guard("disallow"))  # on until train_and_evaluate has returned
      return run.train_step(*feed(args))
    return dataclasses.replace(run, train_step=step, epoch_order=allowed(run.epoch_order, orders),
                               schedule=allowed(run.schedule, []))

  monkeypatch.setattr(train, "build_training_setup", build_with_guard)
  with guard:
    results = train.train_and_evaluate(config, workdir)
  return results, len(steps) - GUARD_FROM_CALL + 1, orders


def test_the_training_loop_copies_nothing_between_host_and_device(config, tmp_path, monkeypatch):
  results, guarded, orders = run_guarded(config, tmp_path, monkeypatch)
  assert results is not None and np.isfinite(results["final"]["test_loss"])
  assert guarded == config.num_train_steps - GUARD_FROM_CALL + 1
  assert [epoch for _, epoch in orders] == [0, 1, 2]  # once per epoch, not per step
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [5, 10, 11]


@pytest.mark.slow
def test_the_guard_would_catch_a_host_batch(config, tmp_path, monkeypatch):
  """A step fed from host memory (the usual way a data pipeline creeps back in) fails the guarded loop:
  so the test above fails if the loop starts copying anything per step."""
  to_host = lambda args: (args[0], np.asarray(args[1]), *args[2:])
  with pytest.raises(Exception, match="(?i)disallowed host-to-device"):
    run_guarded(config, tmp_path, monkeypatch, feed=to_host)


def test_compiled_step_has_no_host_callbacks(config):
  run = build_training_setup(config)
  _, order_key, step_key = run_keys(config.seed)
  train_x, train_y, _, _ = run.on_device()
  lowered = run.train_step.lower(run.initial_state(), train_x, train_y, run.epoch_order(order_key, 0), step_key)
  hlo = lowered.compile().as_text()
  # Instructions only (the text also lists Python source names, which may contain any word).
  found = re.findall(r'custom_call_target="[^"]*callback[^"]*"|= \S+ (?:outfeed|infeed|send|recv)\(', hlo)
  assert not found, f"the training step calls back to the host: {sorted(set(found))}"
