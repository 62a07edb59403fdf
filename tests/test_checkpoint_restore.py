"""A checkpoint that is whole but does not fit the run's state (another tree, shape or dtype) is refused
with one error naming the difference, and nothing is moved aside or overwritten: it is not damage."""

import json

import jax
import jax.numpy as jnp
import pytest

from gap_jax.checkpoint import Checkpoints
from gap_jax.errors import UserError
from gap_jax.train import train_and_evaluate
from gap_jax.trained import load_trained

SAVED = {"params": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}, "step": jnp.int32(1)}


def saved_checkpoints(tmp_path):
  checkpoints = Checkpoints(tmp_path / "checkpoints", keep=3)
  for step in (1, 2):
    checkpoints.save(step, SAVED)
  checkpoints.close()
  return Checkpoints(tmp_path / "checkpoints", keep=3)


@pytest.mark.parametrize("like, named", [
    ({"params": {"w": jnp.ones((3, 5)), "b": jnp.zeros(4)}, "step": jnp.int32(0)},
     r"\['params'\]\['w'\]: saved \(3, 4\) float32, this config makes \(3, 5\) float32"),
    ({"params": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4, jnp.bfloat16)}, "step": jnp.int32(0)},
     r"\['params'\]\['b'\]: saved \(4,\) float32, this config makes \(4,\) bfloat16"),
    ({"params": {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "c": jnp.zeros(2)}, "step": jnp.int32(0)},
     r"\['params'\]\['c'\]: saved nothing, this config makes \(2,\) float32"),
    ({"params": {"w": jnp.ones((3, 4))}, "step": jnp.int32(0)},
     r"\['params'\]\['b'\]: saved \(4,\) float32, this config makes nothing"),
])
def test_a_state_that_does_not_fit_is_refused_and_nothing_moves(tmp_path, like, named):
  checkpoints = saved_checkpoints(tmp_path)
  with pytest.raises(UserError, match=named + r".*left in place.*--fresh_start"):
    checkpoints.restore_latest(like)
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]
  assert not (tmp_path / "corrupt_checkpoints").exists()


def test_a_state_that_fits_restores_the_newest(tmp_path):
  step, state = saved_checkpoints(tmp_path).restore_latest(jax.tree.map(jnp.zeros_like, SAVED))
  assert step == 2 and float(state["params"]["w"].sum()) == 12.0


def test_an_override_to_another_head_keeps_the_run_and_its_record(tmp_path, tiny_config):
  assert train_and_evaluate(tiny_config, tmp_path, stop_after_steps=4) is None
  before = (tmp_path / "config.json").read_text()
  changed = tiny_config.copy_and_resolve_references()
  changed.head = "fc"  # a dense layer the checkpoint does not have
  with pytest.raises(UserError, match="does not fit this config's state.*left in place"):
    train_and_evaluate(changed, tmp_path, on_config_change="override")
  assert (tmp_path / "config.json").read_text() == before  # still describes the checkpoints
  assert json.loads(before)["head"] == tiny_config.head
  assert not (tmp_path / "corrupt_checkpoints").exists()
  assert load_trained(tmp_path).step == 4  # the old run is intact and resumes
