"""Every experiment runs end to end in a tiny setting and writes its files; the verdict is not checked
(a tiny run proves nothing), the structure is."""

import dataclasses
import json

import pytest

import experiments
from experiments import stats
from experiments.framework import run


def tiny(points):
  points = [points[0], points[-1]]  # the sweep's two ends
  for p in points:
    c = p.config
    c.num_train_steps, c.eval_every_steps, c.eval_batch_size, c.eval_train_examples = 3, 3, 64, 64
    c.batch_size = 32
    for block in ("arrangement", "shapes", "synthetic"):
      c[block].num_train, c[block].num_test = 64, 64
  return points


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
  report = (tmp_path / "report.md").read_text()
  for heading in ("**Hypothesis.**", "**Decision rule", "## Verdict:", "## Method", "## Results"):
    assert heading in report
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
