"""The README's verdict table is the one the committed full runs generate: a run committed without
regenerating it (or a verdict typed by hand) fails here."""

import json

from experiments import verdicts


def test_readme_table_is_generated_from_the_committed_runs():
  readme = (verdicts.ROOT / "README.md").read_text()
  assert verdicts.table() in readme, "run: python -m experiments.verdicts --write"


def test_a_row_says_what_its_run_wrote(tmp_path):
  results = {"question": "Q?", "verdict": {"verdict": "refuted"}, "seeds": 10, "train_time_s": 600.0,
             "points": {"a": {}, "b": {}}, "runs": {"a": [{}] * 10, "b": [{}] * 9},
             "controls": [{"passed": True}, {"passed": False}], "finished": "2026-12-04 22:00 UTC",
             "hardware": {"device_count": 1, "device_kind": "cpu", "cpu_model": "AMD EPYC 9B14",
                          "versions": {"jax": "0.10.2"}}}
  (tmp_path / "absent_maps").mkdir()
  (tmp_path / "absent_maps" / "results.json").write_text(json.dumps(results))
  lines = verdicts.table(tmp_path).splitlines()
  row = next(line for line in lines if "absent_maps" in line)
  assert row == ("| [`absent_maps`](results/absent_maps/report.md) | Q? | **refuted** | **failed** | "
                 "2 x 10 seeds = 19 | 10 min | 2026-12-04 22:00 UTC | 1 cpu (AMD EPYC 9B14), jax 0.10.2 |")
  assert any("no full run yet" in line for line in lines)  # the experiments without a committed run
  results["runs_timed_in_part"] = 2  # two runs resumed from checkpoints that kept no time
  (tmp_path / "absent_maps" / "results.json").write_text(json.dumps(results))
  assert "| at least 10 min |" in verdicts.table(tmp_path)


def test_a_runs_time_is_read_the_same_from_results_of_any_age():
  from experiments.framework import run_clock
  from experiments.report import training_time
  assert run_clock({"wall_time_s": 5.0, "train_time_s": 9.0, "train_time_from_step": 0, "resumed_from_step": 3}) \
      == {"train_time_s": 9.0, "train_time_from_step": 0}  # this session's 5 s and 4 s before the checkpoint
  assert run_clock({"wall_time_s": 5.0, "resumed_from_step": 0}) == {"train_time_s": 5.0, "train_time_from_step": 0}
  assert run_clock({"wall_time_s": 5.0, "resumed_from_step": 3}) == {"train_time_s": 5.0, "train_time_from_step": 3}
  assert training_time({"train_time_s": 90.0}) == "1.5 min"
  partial = {"train_time_s": 90.0, "runs_timed_in_part": 1}
  assert training_time(partial).startswith("at least 1.5 min (1 of the runs resumed")


def test_results_name_the_cpu_model_and_its_vector_extensions():
  from gap_jax.train import hardware
  cpu = hardware()["cpu_model"]
  assert cpu is not None and "family" in cpu and ("avx2" in cpu or "no avx2" in cpu)
