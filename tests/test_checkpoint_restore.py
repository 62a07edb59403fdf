"""A checkpoint that is whole but does not fit the run's state (another tree, shape or dtype) is refused
with one error naming the difference, and nothing is moved aside or overwritten: it is not damage. A read
that fails transiently is retried, then reported; only damage moves a checkpoint aside. Runs saving in threads
of one process take turns with orbax."""

import errno
import json
import threading

import jax
import jax.numpy as jnp
import pytest

from gap_jax import checkpoint
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


@pytest.mark.slow  # two training runs
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


def failing_restore(checkpoints, errors):
  """Make `checkpoints.restore` raise the next of `errors` on each call, then restore for real."""
  real, queue = checkpoints.restore, list(errors)

  def restore(step, like):
    if queue:
      raise queue.pop(0)
    return real(step, like)
  checkpoints.restore = restore


def eio():
  return OSError(errno.EIO, "Input/output error")


def wrapped_unavailable():
  try:
    raise ValueError("UNAVAILABLE: gcs: connection reset")
  except ValueError as e:
    try:
      raise RuntimeError("tensorstore read failed") from e
    except RuntimeError as wrapped:
      return wrapped


@pytest.mark.parametrize("error", [eio, wrapped_unavailable, lambda: TimeoutError("read timed out")])
def test_a_transient_read_error_is_retried_and_nothing_moves(tmp_path, monkeypatch, error, capsys):
  monkeypatch.setattr(checkpoint, "RETRY_DELAYS_S", (0.0, 0.0))
  checkpoints = saved_checkpoints(tmp_path)
  failing_restore(checkpoints, [error(), error()])  # two failures, then the storage answers
  step, state = checkpoints.restore_latest(jax.tree.map(jnp.zeros_like, SAVED))
  assert step == 2 and float(state["params"]["w"].sum()) == 12.0
  assert capsys.readouterr().err.count("trying again") == 2
  assert not (tmp_path / "corrupt_checkpoints").exists()


def test_a_read_error_that_persists_is_reported_and_nothing_moves(tmp_path, monkeypatch):
  monkeypatch.setattr(checkpoint, "RETRY_DELAYS_S", (0.0, 0.0))
  checkpoints = saved_checkpoints(tmp_path)
  failing_restore(checkpoints, [eio() for _ in range(3)])
  with pytest.raises(UserError, match=r"step 2 .*kept failing \(OSError.*after 3 attempts.*left in place"):
    checkpoints.restore_latest(jax.tree.map(jnp.zeros_like, SAVED))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2"]
  assert not (tmp_path / "corrupt_checkpoints").exists()


def test_damage_is_told_from_a_transient_error():
  assert checkpoint.is_transient(eio()) and checkpoint.is_transient(wrapped_unavailable())
  assert not checkpoint.is_transient(OSError(errno.ENOENT, "No such file"))  # a file that is gone: damage
  assert not checkpoint.is_transient(ValueError("DATA_LOSS: Error reading: unexpected end of file"))
  assert not checkpoint.is_transient(ValueError("not a valid msgpack file"))


def test_runs_in_threads_saving_at_the_same_steps_all_finish_with_their_own_checkpoints(tmp_path):
  """One run per device trains in threads of one process: orbax's process-global save state made two managers
  saving at once fail ("Directory not empty") or hang; saves now take turns, and each run keeps its own."""
  barrier, errors = threading.Barrier(2), []

  def run(i):
    try:
      checkpoints = Checkpoints(tmp_path / f"run{i}", 3)
      for step in range(1, 9):
        barrier.wait()  # both save the same step at the same moment
        checkpoints.save(step, {"w": jnp.full(1000, 10.0 * i + step)})
      checkpoints.close()
    except Exception as e:
      errors.append(e)

  threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(120)
  assert not any(t.is_alive() for t in threads) and not errors, errors
  for i in range(2):
    checkpoints = Checkpoints(tmp_path / f"run{i}", 3)
    assert checkpoints.latest_step() == 8
    restored = checkpoints.restore(8, {"w": jnp.zeros(1000)})
    checkpoints.close()
    assert float(restored["w"][0]) == 10.0 * i + 8
