import json
import re

import jax
import numpy as np
import pytest

from gap_jax.errors import UserError
from gap_jax.train import hms, train_and_evaluate
from gap_jax.trained import load_trained


def params_of(workdir):
  return jax.tree.leaves(jax.device_get(load_trained(workdir).state))


def test_short_run_learns_and_writes_its_files(tmp_path):
  from gap_jax.configs import synthetic
  config = synthetic.get_config()  # 60 steps, 4 classes: chance is 25%
  results = train_and_evaluate(config, tmp_path)
  assert results["final"]["test_accuracy"] > 0.6, results["final"]
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["final"] == results["final"] and on_disk["config"]["head"] == "gap"
  assert on_disk["hardware"]["device_count"] == jax.device_count()
  import flax, optax
  versions = on_disk["hardware"]["versions"]
  assert (versions["jax"], versions["flax"], versions["optax"]) == (jax.__version__, flax.__version__,
                                                                    optax.__version__)
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert {"train/loss", "train/images_per_s"} <= set(lines[0]) and any("test/accuracy" in l for l in lines)
  assert list((tmp_path / "tensorboard").iterdir()), "no TensorBoard event file"


def test_a_log_file_gets_plain_progress_lines(tmp_path, tiny_config, capsys):
  tiny_config.progress_every_s = 0.0  # a line at every log step (8 steps, logged every 2)
  train_and_evaluate(tiny_config, tmp_path)
  lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("step ") and "ETA" in l]
  assert [l.split(" (")[0] for l in lines] == ["step 2/8", "step 4/8", "step 6/8", "step 8/8"], lines
  assert re.fullmatch(r"step 8/8 \(100%\): loss \d+\.\d{4}, \d+ images/s, ETA 0:00:00", lines[-1])


def test_durations_print_as_hours_that_do_not_wrap_at_a_day():
  assert hms(3 * 3600 + 62) == "3:01:02"
  assert hms(2 * 86400 + 59.6) == "48:01:00"  # 48 h, rounded to the second


def test_resume_is_bit_identical(tmp_path, tiny_config):
  tiny_config.checkpoint_every_steps = 2
  straight = train_and_evaluate(tiny_config, tmp_path / "straight")
  assert train_and_evaluate(tiny_config, tmp_path / "resumed", stop_after_steps=3) is None
  resumed = train_and_evaluate(tiny_config, tmp_path / "resumed")
  assert resumed["resumed_from_step"] == 3
  for a, b in zip(params_of(tmp_path / "straight"), params_of(tmp_path / "resumed")):
    np.testing.assert_array_equal(a, b)
  assert straight["final"] == resumed["final"]


def test_a_resumed_runs_training_time_counts_every_invocation(tmp_path, tiny_config, monkeypatch):
  """train_time_s: the time at the checkpoint it resumed from (kept in the checkpoint) plus this invocation's;
  from a checkpoint that kept no time (saved before runs kept it), this invocation's alone, from that step."""
  import time
  from gap_jax.checkpoint import Checkpoints
  tiny_config.checkpoint_every_steps = 2
  straight = train_and_evaluate(tiny_config, tmp_path / "straight")
  assert straight["train_time_s"] == straight["wall_time_s"] and straight["train_time_from_step"] == 0
  t0 = time.time()
  assert train_and_evaluate(tiny_config, tmp_path / "resumed", stop_after_steps=3) is None
  first = time.time() - t0
  ck = Checkpoints(tmp_path / "resumed" / "checkpoints", 3)
  at_3 = ck.clock(3)
  ck.close()
  assert 0 < at_3["train_time_s"] <= first and at_3["train_time_from_step"] == 0
  resumed = train_and_evaluate(tiny_config, tmp_path / "resumed")
  assert resumed["train_time_s"] == pytest.approx(at_3["train_time_s"] + resumed["wall_time_s"])
  assert resumed["train_time_from_step"] == 0

  save = Checkpoints.save
  monkeypatch.setattr(Checkpoints, "save", lambda self, step, state, clock=None: save(self, step, state))
  assert train_and_evaluate(tiny_config, tmp_path / "untimed", stop_after_steps=3) is None
  monkeypatch.undo()
  resumed = train_and_evaluate(tiny_config, tmp_path / "untimed")
  assert resumed["train_time_s"] == resumed["wall_time_s"] and resumed["train_time_from_step"] == 3


def test_finished_run_is_not_trained_again(tmp_path, tiny_config):
  first = train_and_evaluate(tiny_config, tmp_path)
  again = train_and_evaluate(tiny_config, tmp_path)
  assert again["resumed_from_step"] == tiny_config.num_train_steps
  assert again["final"] == first["final"]


@pytest.mark.parametrize("field,value,message", [
    ("model", "resnet9000", "unknown model 'resnet9000'"),
    ("head", "median", "unknown head 'median'"),
    ("optimizer", "lion", "unknown optimizer 'lion'"),
    ("lr_schedule", "zigzag", "unknown lr_schedule 'zigzag'"),
    ("batch_size", 100_000, "exceeds the 256 training examples"),
])
def test_bad_config_values_give_clear_errors(tmp_path, tiny_config, field, value, message):
  tiny_config[field] = value
  with pytest.raises(UserError, match=message):
    train_and_evaluate(tiny_config, tmp_path)


def test_weight_decay_reaches_kernels_only():
  """One SGD step on zero gradients: only kernels shrink, by exactly lr * wd * w; biases, lse's r and
  other head parameters stay."""
  import jax.numpy as jnp
  from gap_jax.configs import default
  from gap_jax.optim import make_optimizer
  import optax
  c = default.get_config()
  c.optimizer, c.momentum, c.weight_decay = "sgd", 0.0, 0.1
  params = {"conv": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}, "head": {"r": jnp.ones(())}}
  tx = make_optimizer(c, optax.constant_schedule(0.5))
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(new["conv"]["kernel"], 1 - 0.5 * 0.1)
  np.testing.assert_array_equal(new["conv"]["bias"], 1.0)
  np.testing.assert_array_equal(new["head"]["r"], 1.0)
