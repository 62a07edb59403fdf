"""The one training set-up (gap_jax/training_setup.py) as the loop uses it: refusals that need no data come
before the dataset is loaded, a config that fails validation writes nothing, and `profile_steps` traces the
steps it names into <workdir>/profile; load_trained builds the same set-up from a workdir; set-ups that differ
only in their seed share compiled programs."""

import itertools
import json
import subprocess
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import pytest

from gap_jax import training_setup
from gap_jax.steps import Programs, run_keys
from gap_jax.errors import UserError
from gap_jax.train import train_and_evaluate
from gap_jax.trained import load_trained
from gap_jax.workdir import SPEED_ONLY_FIELDS, record_config

ROOT = Path(__file__).parents[1]


class DataLoaded(Exception):
  pass


@pytest.fixture
def no_data(monkeypatch):
  """Loading the dataset raises DataLoaded: what is refused without it never gets there."""
  def load(config):
    raise DataLoaded
  monkeypatch.setattr(training_setup, "load_dataset", load)


def test_a_workdir_of_another_config_is_refused_before_the_data_loads(tmp_path, tiny_config, no_data):
  other = tiny_config.copy_and_resolve_references()
  other.learning_rate = 0.5
  record_config(tmp_path, other)
  with pytest.raises(UserError, match=r"holds a run with a different config \(learning_rate"):
    train_and_evaluate(tiny_config, tmp_path)
  with pytest.raises(DataLoaded):  # the config it holds gets as far as the data
    train_and_evaluate(other, tmp_path)


def test_an_unwritable_workdir_is_refused_before_the_data_loads(tiny_config, no_data):
  with pytest.raises(UserError, match="cannot write to workdir /proc/gap_jax_run"):
    train_and_evaluate(tiny_config, "/proc/gap_jax_run")


@pytest.mark.parametrize("field,value,message", [
    ("learning_rate", -0.1, "learning_rate=-0.1 must be positive"),
    ("profile_steps", (0, 2), r"profile_steps=\(0, 2\) must be two positive integers"),
    ("profile_steps", (3,), "must be two positive integers"),
    ("profile_steps", (2.5, 2), "must be two positive integers"),
])
def test_a_config_that_fails_validation_writes_nothing(tmp_path, tiny_config, no_data, field, value, message):
  tiny_config[field] = value
  with pytest.raises(UserError, match=message):
    train_and_evaluate(tiny_config, tmp_path / "run")
  assert not (tmp_path / "run").exists()


def test_profile_steps_parse_from_the_command_line():
  code = ("import sys; from gap_jax import main; main.parse_flags(sys.argv); "
          "print(tuple(main._CONFIG.value.profile_steps))")
  out = subprocess.run([sys.executable, "-c", code, "--config", "gap_jax/configs/synthetic.py", "--workdir",
                        "unused", "--config.profile_steps=10,5"], capture_output=True, text=True, cwd=ROOT)
  assert out.returncode == 0 and out.stdout.strip() == "(10, 5)", out.stderr[-2000:]


@pytest.mark.slow  # two tiny runs
def test_profile_steps_write_a_trace_and_change_nothing_else(tmp_path, tiny_config):
  plain = train_and_evaluate(tiny_config, tmp_path / "plain")
  tiny_config.profile_steps = (3, 2)
  traced = train_and_evaluate(tiny_config, tmp_path / "traced")
  traces = list((tmp_path / "traced" / "profile").rglob("*.xplane.pb"))
  assert len(traces) == 1 and traces[0].stat().st_size > 0
  assert not (tmp_path / "plain" / "profile").exists()
  assert traced["final"] == plain["final"]
  tiny_config.profile_steps = ()  # a speed-only field: the workdir's run goes on without it
  assert train_and_evaluate(tiny_config, tmp_path / "traced")["resumed_from_step"] == traced["steps"]


def test_load_trained_reads_a_run_from_before_the_speed_only_fields(tmp_path, tiny_config):
  assert train_and_evaluate(tiny_config, tmp_path, stop_after_steps=1) is None
  config_file = tmp_path / "config.json"
  stored = json.loads(config_file.read_text())
  config_file.write_text(json.dumps({k: v for k, v in stored.items() if k not in SPEED_ONLY_FIELDS}))
  trained = load_trained(tmp_path)
  assert trained.step == 1 and trained.config.cpu_kernels == "auto" and tuple(trained.config.profile_steps) == ()


def _two_steps(config):
  """A set-up of `config`, two training steps from its initial state, and the evaluation after them."""
  run = training_setup.build_training_setup(config)
  _, order_key, step_key = run_keys(config.seed)
  state = run.initial_state()
  train_x, train_y, test_x, test_y = run.on_device()
  for args in itertools.islice(run.batches(order_key, 0, train_x, train_y), 2):
    state, _ = run.train_step(state, *args, step_key)
  return run, jax.device_get(state.params), jax.device_get(run.evaluate(state.params, test_x, test_y, 128))


def test_another_seed_reuses_the_compiled_programs_and_trains_as_a_set_up_built_alone(tiny_config, monkeypatch):
  seeded = lambda seed: ml_collections.ConfigDict({**tiny_config.to_dict(), "seed": seed,
                                                   "synthetic": {**tiny_config.synthetic.to_dict(), "seed": seed}})
  first, (shared, params, scores) = _two_steps(seeded(0))[0], _two_steps(seeded(1))
  assert shared.train_step.jitted is first.train_step.jitted and shared.evaluate.jitted is first.evaluate.jitted
  assert shared.init is first.init
  assert not np.array_equal(shared.data.mean, first.data.mean)  # its own data, so its own normalisation
  monkeypatch.setattr(training_setup, "PROGRAMS", Programs(kept=16))  # nothing compiled yet
  alone, params_alone, scores_alone = _two_steps(seeded(1))
  assert alone.train_step.jitted is not shared.train_step.jitted
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_alone)):
    np.testing.assert_array_equal(a, b)
  assert scores == scores_alone
  other = seeded(1)
  other.learning_rate = 0.5
  assert training_setup.build_training_setup(other).train_step.jitted is not alone.train_step.jitted
