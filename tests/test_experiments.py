"""Every experiment runs end to end in a tiny setting and writes its files; the verdict is not checked
(a tiny run proves nothing), the structure is."""

import dataclasses
import json
import os

import pytest

import experiments
from experiments import stats
from experiments.framework import check_controls, run


def tiny(points):
  points = [points[0], points[-1]]  # the sweep's two ends
  for p in points:
    c = p.config
    c.num_train_steps, c.eval_every_steps, c.eval_batch_size, c.eval_train_examples = 3, 3, 64, 64
    c.batch_size = 32
    for block in ("arrangement", "counterexample", "position", "shapes", "synthetic"):
      c[block].num_train, c[block].num_test = 64, 64
  return points


@pytest.mark.slow
@pytest.mark.parametrize("name", experiments.NAMES)
def test_experiment_writes_results_report_and_figures(tmp_path, name):
  exp = experiments.get(name)
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  results = run(small, tmp_path, quick=True, seeds=2)
  on_disk = json.loads((tmp_path / "results.json").read_text())
  assert on_disk["verdict"]["verdict"] in ("supported", "refuted", "inconclusive")
  assert on_disk["hypothesis"] and on_disk["decision_rule"] and len(on_disk["points"]) == 2
  for point in on_disk["points"].values():
    assert point["test_accuracy"]["n"] == 2 and point["test_accuracy"]["lo"] <= point["test_accuracy"]["hi"]
  for key in on_disk["points"]:  # generated data is drawn anew for each seed
    seeds = [json.loads((tmp_path / "runs" / key / f"seed{s}" / "config.json").read_text()) for s in range(2)]
    assert [c[c["dataset"]]["seed"] for c in seeds if c["dataset"] in c] in ([0, 1], [])
  report = (tmp_path / "report.md").read_text()
  for heading in ("**Hypothesis.**", "**Decision rule", "## Verdict:", "## Controls", "## Method", "## Results"):
    assert heading in report
  assert on_disk["controls"] == check_controls(exp)  # through its own decide, recorded
  for figure in results["figures"]:
    assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG" and f"]({figure})" in report
  # finished runs are found, not run again
  stamp = {p: p.stat().st_mtime for p in tmp_path.rglob("measured.json")}
  run(small, tmp_path, quick=True, seeds=2)
  assert {p: p.stat().st_mtime for p in tmp_path.rglob("measured.json")} == stamp


def test_t_interval_against_a_hand_computation():
  s = stats.summarize([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
  assert s["mean"] == 2.0 and abs(s["hi"] - (2 + 4.302653 / 3 ** 0.5)) < 1e-5
  assert stats.cohens_d([1, 2, 3], [1, 2, 3]) == 0.0 and stats.cohens_d([2, 3, 4], [1, 2, 3]) == 1.0


def test_unknown_experiment():
  from gap_jax.errors import UserError
  with pytest.raises(UserError, match="unknown experiment 'nope'"):
    experiments.get("nope")


def tiny_experiment(name):
  exp = experiments.get(name)
  return dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))


@pytest.mark.slow
def test_changed_config_retrains_only_that_point(tmp_path):
  exp = tiny_experiment("position")  # the cheapest sweep: what is tested is the framework's, not the experiment's
  run(exp, tmp_path, quick=True, seeds=2)
  first, last = exp.sweep(True)
  stamp = {p: p.stat().st_mtime for p in tmp_path.rglob("measured.json")}

  def changed(quick):
    points = tiny(experiments.get("position").sweep(True))
    points[-1].config.num_train_steps = 4
    return points
  run(dataclasses.replace(exp, sweep=changed), tmp_path, quick=True, seeds=2)
  after = {p: p.stat().st_mtime for p in tmp_path.rglob("runs/*/seed*/measured.json")}
  assert {p for p in after if after[p] != stamp[p]} == {
      tmp_path / "runs" / last.key / f"seed{s}" / "measured.json" for s in range(2)}
  assert list((tmp_path / "runs" / last.key / "seed0" / "previous").iterdir())  # the old run is kept


@pytest.mark.slow
def test_training_time_counts_every_run_and_says_when_a_resumed_one_left_some_out(tmp_path):
  """The total is the runs' own train_time_s; a run measured before runs kept their time, which had resumed
  (measured.json without train_time_from_step, results.json with only the last session's time), makes it 'at
  least'."""
  exp = tiny_experiment("position")
  results = run(exp, tmp_path, quick=True, seeds=2)
  runs = sorted(tmp_path.glob("runs/*/seed*"))
  times = [json.loads((r / "results.json").read_text())["train_time_s"] for r in runs]
  assert results["train_time_s"] == pytest.approx(sum(times)) and results["runs_timed_in_part"] == 0
  old = runs[0]
  for name, drop in (("measured.json", ("train_time_from_step",)),
                     ("results.json", ("train_time_s", "train_time_from_step"))):
    record = json.loads((old / name).read_text())
    for key in drop:
      record.pop(key)
    record.update({"resumed_from_step": 2} if name == "results.json" else {})
    (old / name).write_text(json.dumps(record))
  again = run(exp, tmp_path, quick=True, seeds=2)
  assert again["runs_timed_in_part"] == 1 and again["train_time_s"] == pytest.approx(results["train_time_s"])
  assert "Training time of the runs (each a whole train_and_evaluate) at least" in (tmp_path / "report.md").read_text()


@pytest.mark.slow
def test_flagship_report_answers_every_claim(tmp_path):
  from experiments import why_gap_works
  results = why_gap_works.run(tmp_path / "flagship", seeds=2, components_dir=tmp_path, get=tiny_experiment)
  report = (tmp_path / "flagship" / "report.md").read_text()
  assert len(results["claims"]) == len(why_gap_works.CLAIMS)
  assert why_gap_works.CLAIMS[0][1] == "counterexample"  # it opens with the question's own example
  for i, (claim, name, adds) in enumerate(why_gap_works.CLAIMS, 1):
    verdict = results["claims"][i - 1]["verdict"]["verdict"]
    assert f"## {i}. {name}: {verdict}" in report and claim in report
    assert (tmp_path / f"{name}-quick" / "report.md").exists()
    closing = report.split("## What the evidence says")[1]  # and closes with what the verdicts say
    section = {"supported": "Supported by these runs", "refuted": "Refuted",
               "inconclusive": "Not settled"}[verdict]
    assert section in closing and name in closing.split(section)[1].split("\n")[0]
  for c in results["claims"]:  # links are relative to the flagship's report and resolve
    for link in [c["report"], *c["figures"]]:
      assert (tmp_path / "flagship" / link).exists() and f"({link})" in report


def test_flagship_answer_follows_the_verdicts_alone(tmp_path, monkeypatch):
  """The flagship's closing section, from planted verdicts (no training): each claim lands under the heading its
  verdict names, a refuted one is said to be no part of the answer, and the table counts them."""
  from experiments import framework, why_gap_works
  planted = {name: verdict for (_, name, _), verdict in
             zip(why_gap_works.CLAIMS, ["supported", "refuted"] + ["inconclusive"] * len(why_gap_works.CLAIMS))}

  def recorded(exp, out_dir, quick, seeds, seeds_together=False):
    return {"hypothesis": f"h {exp}", "decision_rule": "r", "controls": [], "runs": {"p": [{}] * seeds},
            "train_time_s": 60.0, "figures": [],
            "verdict": {"verdict": planted[exp], "reason": f"planted {planted[exp]}", "effect": {}}}
  monkeypatch.setattr(framework, "run", recorded)
  results = why_gap_works.run(tmp_path / "flagship", seeds=2, components_dir=tmp_path, get=lambda name: name)
  closing = (tmp_path / "flagship" / "report.md").read_text().split("## What the evidence says")[1]
  meaning = {name: adds for _, name, adds in why_gap_works.CLAIMS}
  first, second, *rest = [name for _, name, _ in why_gap_works.CLAIMS]
  assert f"Supported by these runs: {meaning[first]} ({first})." in closing
  assert f"Refuted, so not part of the answer: that {meaning[second]} ({second})." in closing
  assert "Not settled by these quick runs: " + ", ".join(rest) in closing
  report = (tmp_path / "flagship" / "report.md").read_text()
  assert f"1 of {len(rest) + 2} claims supported, 1 refuted, {len(rest)} inconclusive" in report
  assert [c["verdict"]["verdict"] for c in results["claims"]] == [planted[n] for _, n, _ in why_gap_works.CLAIMS]


def test_a_sigterm_between_the_flagships_experiments_starts_no_other_and_exits_0(tmp_path, monkeypatch, capsys):
  """A SIGTERM while one experiment writes its report (between two sweeps) used to meet the default handler
  (exit 143): now that experiment finishes, the next does not start, and the command exits 0."""
  import signal
  from experiments import framework, why_gap_works
  from experiments.__main__ import experiment_process
  from gap_jax.cpu import malloc
  started = []

  # The second experiment's report, during which the signal lands.
  def recorded(exp, out_dir, quick, seeds, seeds_together=False):
    started.append(exp)
    if len(started) == 2:
      os.kill(os.getpid(), signal.SIGTERM)
    return {"hypothesis": "h", "decision_rule": "r", "controls": [], "runs": {"p": [{}]}, "train_time_s": 1.0,
            "figures": [], "verdict": {"verdict": "supported", "reason": "planted", "effect": {}}}
  monkeypatch.setattr(framework, "run", recorded)
  monkeypatch.setattr(malloc, "restart_with_settings", lambda: None)  # no re-exec inside pytest
  leaked = []
  previous = signal.signal(signal.SIGTERM, lambda *a: leaked.append(a))  # what the command's handler keeps out
  try:
    with pytest.raises(SystemExit) as stop, experiment_process():
      why_gap_works.run(tmp_path / "flagship", seeds=2, components_dir=tmp_path, get=lambda name: name)
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert stop.value.code == 0 and started == [n for _, n, _ in why_gap_works.CLAIMS[:2]] and not leaked
  assert not (tmp_path / "flagship" / "results.json").exists()
  assert f"before claim 3/{len(why_gap_works.CLAIMS)}" in capsys.readouterr().err


@pytest.mark.slow
def test_seeds_together_measure_what_runs_one_at_a_time_measure(tmp_path):
  exp = tiny_experiment("position")
  apart = run(exp, tmp_path / "apart", quick=True, seeds=2)
  together = run(exp, tmp_path / "together", quick=True, seeds=2, seeds_together=True)
  for key, runs in apart["runs"].items():
    for alone, with_others in zip(runs, together["runs"][key]):
      assert alone.keys() == with_others.keys()
      for metric in alone.keys() - {"train_time_s"}:  # equal but for the float rounding of batched convolutions
        assert with_others[metric] == pytest.approx(alone[metric], rel=1e-3, abs=1e-3), (key, metric)
  ran = [json.loads(p.read_text())["trained_together"] for p in (tmp_path / "together" / "runs").rglob("results.json")]
  assert ran == [2] * 4  # each point's two seeds as one program
