"""The one training set-up (gap_jax/training_setup.py) as the loop uses it: refusals that need no data come
before the dataset is loaded, a config that fails validation writes nothing, and `profile_steps` traces the
steps it names into <workdir>/profile; load_trained builds the same set-up from a workdir."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gap_jax import training_setup
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
