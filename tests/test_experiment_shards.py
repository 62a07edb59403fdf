"""A sweep split over invocations (--shard i/n): each trains only its share of the (point, seed) runs, the
report appears only once every run is finished, and it is the report an unsharded run gives."""

import dataclasses
import json
import os
import signal

import pytest

import experiments
from experiments import framework
from experiments.framework import parse_shard, run, run_shard
from gap_jax.errors import UserError
from test_experiments import tiny


@pytest.mark.slow
def test_shards_share_a_sweep_and_the_last_writes_the_report(tmp_path, monkeypatch):
  exp = experiments.get("position")  # the cheapest sweep: what is tested is the framework's sharding
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  trained = []
  real_train = framework.train_together
  monkeypatch.setattr(framework, "train_together",
                      lambda configs, workdirs, **kw: trained.extend(workdirs) or real_train(configs, workdirs, **kw))
  assert run_shard(small, tmp_path, (0, 3), quick=True, seeds=2) is None  # runs 0 and 3 of 4
  assert len(trained) == 2 and not (tmp_path / "report.md").exists()
  assert run_shard(small, tmp_path, (2, 3), quick=True, seeds=2) is None  # run 2
  results = run_shard(small, tmp_path, (1, 3), quick=True, seeds=2)  # run 1: the last, writes the report
  assert len(trained) == 4 and len(set(trained)) == 4  # every run trained exactly once
  assert (tmp_path / "report.md").exists() and results["seeds"] == 2
  again = run(small, tmp_path, quick=True, seeds=2)  # unsharded: finds all four, trains nothing
  assert len(trained) == 4
  assert again["points"] == results["points"] == json.loads((tmp_path / "results.json").read_text())["points"]


@pytest.mark.parametrize("text", ["2/2", "1", "a/b", "-1/3", "0/0"])
def test_a_wrong_shard_is_refused(text):
  with pytest.raises(UserError, match=r"--shard .*0 <= i < n"):
    parse_shard(text)


def test_shard_parses():
  assert parse_shard("3/8") == (3, 8)


def test_a_run_stopped_by_sigterm_stops_the_sweep_and_exits_0(tmp_path, monkeypatch, capsys):
  """Training returns None when SIGTERM stopped it (checkpoint saved): the sweep must not go on to
  measure a run that has no results, nor start the next one; the command says so and exits 0 to be requeued."""
  from experiments.__main__ import experiment_process
  from gap_jax.cpu import malloc
  exp = experiments.get("gap_vs_fc")
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  started = []
  monkeypatch.setattr(framework, "train_together",
                      lambda configs, workdirs, **kw: started.extend(workdirs) or [None] * len(configs))
  monkeypatch.setattr(malloc, "restart_with_settings", lambda: None)  # no re-exec inside pytest
  with pytest.raises(SystemExit) as stop, experiment_process():
    run(small, tmp_path, quick=True, seeds=2)
  assert stop.value.code == 0 and len(started) == 1
  assert "run the same command to resume" in capsys.readouterr().err
  assert not (tmp_path / "results.json").exists()


def test_a_sigterm_while_a_run_is_measured_lets_it_finish_and_starts_no_other(tmp_path, monkeypatch, capsys):
  """Between trainings (a run's measure, the next run's start) SIGTERM used to meet the default handler: the
  process died with no line and exit 143, or the signal was lost. Now the measure finishes, no run starts."""
  from experiments.__main__ import experiment_process
  from gap_jax.cpu import malloc
  exp = experiments.get("gap_vs_fc")
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  measured = []

  def run_seeds(exp, point, seeds, runs_dir, stop=None):  # a run's measure, during which the signal lands
    os.kill(os.getpid(), signal.SIGTERM)
    measured.append((point.key, seeds))
    return [{"test_accuracy": 0.5, "train_accuracy": 1.0, "train_time_s": 1.0, "train_time_from_step": 0}]

  leaked = []
  monkeypatch.setattr(framework, "run_seeds", run_seeds)
  monkeypatch.setattr(malloc, "restart_with_settings", lambda: None)  # no re-exec inside pytest
  previous = signal.signal(signal.SIGTERM, lambda *a: leaked.append(a))  # what the sweep's handler must keep out
  try:
    with pytest.raises(SystemExit) as stop, experiment_process():
      run(small, tmp_path, quick=True, seeds=2)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert stop.value.code == 0 and len(measured) == 1 and not leaked
  assert "3 of 4 runs unfinished" in capsys.readouterr().err


@pytest.mark.slow
def test_shards_train_their_seeds_together(tmp_path):
  """Each shard groups the seeds of a point that it holds: shard 0 of 2 holds seeds 0 and 2 of every point."""
  exp = experiments.get("position")
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  assert run_shard(small, tmp_path, (0, 2), quick=True, seeds=4, seeds_together=True) is None
  together = lambda seed: {json.loads(p.read_text())["trained_together"]
                           for p in tmp_path.glob(f"runs/*/seed{seed}/results.json")}
  assert together(0) == together(2) == {2} and together(1) == set()
  results = run_shard(small, tmp_path, (1, 2), quick=True, seeds=4, seeds_together=True)
  assert together(1) == together(3) == {2} and results["seeds"] == 4 and (tmp_path / "report.md").exists()
