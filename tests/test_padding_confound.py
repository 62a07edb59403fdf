"""Padding re-runs (experiments/padding.py) and the padding-confound comparison (experiments/padding_confound.py):
a re-run changes the padding and nothing else, so its seeds pair with the original's; the comparison's rule
and its planted controls; known paired differences come out as computed by hand; unpaired sets are refused."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

import experiments
from experiments import padding_confound as pc
from experiments.framework import run, run_dir, seed_config
from experiments.padding import padded_point, with_padding
from gap_jax.data import load_dataset
from gap_jax.errors import UserError
from gap_jax.workdir import config_differences

OTHER = {"arrangement": "zeros", "counterexample": "zeros", "gap_vs_gmp_localization": "circular"}


@pytest.mark.parametrize("name", pc.EXPERIMENTS)
@pytest.mark.parametrize("quick", [True, False])
def test_a_rerun_changes_the_padding_and_nothing_else(name, quick):
  exp = experiments.get(name)
  padding = OTHER[name]
  rerun = with_padding(exp, padding).sweep(quick)
  assert len({p.key for p in rerun}) == len(rerun)
  assert {p.config.padding for p in rerun if p.params.get("padding") != "none"} == {padding}
  for original in exp.sweep(quick):
    mine = padded_point(original, padding)
    assert mine.key in {p.key for p in rerun}
    diffs = config_differences(original.config.to_dict(), mine.config.to_dict())
    assert diffs in ([], [f"padding: {original.config.padding!r} -> {padding!r}"])
    assert mine.params.get("padding") in (None, "none", padding)
    for seed in (0, 3):  # seed s of the re-run is seed s of the original but for the padding
      assert config_differences(seed_config(original, seed).to_dict(), seed_config(mine, seed).to_dict()) == diffs


def test_counterexample_twins_become_one_point_and_the_1x1_net_keeps_padding_none():
  full = with_padding(experiments.get("counterexample"), "zeros").sweep(False)
  keys = [p.key for p in full]
  assert "head-gap_rf-9_padding-zeros" in keys and not any("circular" in k for k in keys)
  assert len(keys) == 15  # 3 heads x (1 px + 4 fields), the circular twins merged into the zeros points
  assert [p.params["padding"] for p in full if p.params["receptive_field"] == 1] == ["none"] * 3


def test_a_rerun_draws_the_same_data_as_the_original():
  original = experiments.get("arrangement").sweep(True)[0]
  small = dataclasses.replace(original, config=original.config.copy_and_resolve_references())
  small.config.arrangement.num_train = small.config.arrangement.num_test = 32
  mine = padded_point(small, "zeros")
  same, other = (load_dataset(seed_config(p, s)) for p, s in ((mine, 1), (small, 2)))
  first = load_dataset(seed_config(small, 1))
  assert np.array_equal(same.train.images, first.train.images)
  assert np.array_equal(same.test.labels, first.test.labels)
  assert not np.array_equal(other.train.images, first.train.images)  # another seed draws other data


def test_a_padding_that_changes_nothing_or_is_unknown_is_refused():
  with pytest.raises(UserError, match="choose one of"):
    with_padding(experiments.get("arrangement"), "valid")
  with pytest.raises(UserError, match="already trains every point with circular"):
    with_padding(experiments.get("arrangement"), "circular").sweep(True)
  with pytest.raises(UserError, match="counterexample --quick already"):
    with_padding(experiments.get("counterexample"), "circular").sweep(True)
  assert with_padding(experiments.get("counterexample"), "circular").sweep(False)  # its zeros points change


# One refusal in the quick loop (-m "not slow"); each is a process start, so the rest run in the full suite.
@pytest.mark.parametrize("argv", [["arrangement", "--padding", "reflect"]] + [
    pytest.param(argv, marks=pytest.mark.slow) for argv in (
        ["why_gap_works", "--padding", "zeros"], ["arrangement", "--padding", "circular", "--quick"],
        ["padding_confound", "--padding", "zeros"])])
def test_the_command_line_refuses_with_one_line_and_status_2(argv, tmp_path):
  done = subprocess.run([sys.executable, "-m", "experiments", *argv, "--out", str(tmp_path / "out")],
                        capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr
  assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("lo, hi, expected", [
    (0.06, 0.2, "confound"), (-0.3, -0.051, "confound"), (-0.05, 0.05, "not a confound"),
    (-0.01, 0.02, "not a confound"), (0.02, 0.08, "undetermined"), (-0.2, 0.2, "undetermined"),
    (-0.06, 0.0, "undetermined"), (0.01, 0.19, "undetermined"), (-0.08, 0.04, "undetermined")])
def test_the_rule_reads_the_interval(lo, hi, expected):
  """The interval decides, not the mean: (0.01, 0.19) has its mean at 0.1 and is still undetermined."""
  assert pc.outcome({"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 3}) == expected
  assert pc.outcome({"mean": 0.5, "lo": 0.5, "hi": 0.5, "n": 1}) == "undetermined"  # one seed: no interval


def test_the_planted_controls_come_out_as_expected():
  checked = pc.controls()
  assert len(checked) == 7 and all(c["passed"] for c in checked), checked
  for name in pc.EXPERIMENTS:  # the planted move is what the comparison measures
    moved = [r for r in pc.compare(name, pc.planted_sets(name, pc.PLANTED_MOVE))["quantities"]
             if r["outcome"] == "confound"]
    assert len(moved) == 1 and moved[0]["difference"]["mean"] == pytest.approx(pc.PLANTED_MOVE, abs=0.02)


def with_values(sets, key, metric, zeros, circular):
  """The planted sets with `metric` at point `key` set seed by seed (circular's key may name its padding)."""
  for (_, results), values in zip(sets, (zeros, circular)):
    mine = next(k for k in results["runs"] if k.replace("circular", "zeros") == key.replace("circular", "zeros"))
    for run, v in zip(results["runs"][mine], values):
      run[metric] = v
  return sets


def row(comparison, quantity, **where):
  return next(r for r in comparison["quantities"]
              if r["quantity"] == quantity and all(r["where"][k] == v for k, v in where.items()))


def test_a_known_paired_difference_and_the_floor():
  sets = with_values(pc.planted_sets("arrangement", 0.0), "head-gap_rf-11", "rotation_pair",
                     [0.50, 0.70, 0.52], [0.61, 0.80, 0.63])  # +0.11, +0.10, +0.11
  r = row(pc.compare("arrangement", sets), "rotation_pair", receptive_field=11)
  assert r["difference"]["mean"] == pytest.approx(0.32 / 3) and r["seeds"] == [0, 1, 2]
  assert r["difference"]["values"] == pytest.approx([0.11, 0.10, 0.11])
  assert r["outcome"] == "confound"  # t interval 0.1067 +- 4.30 * 0.0058 / sqrt(3): [0.092, 0.121]
  for _, results in sets:
    results["train_accuracy_floor"] = 0.6
  sets[1][1]["runs"]["head-gap_rf-11"][1]["train_accuracy"] = 0.5  # below the floor under one padding
  r = row(pc.compare("arrangement", sets), "rotation_pair", receptive_field=11)
  assert r["seeds"] == [0, 2] and r["difference"]["values"] == pytest.approx([0.11, 0.11])


def test_localization_compares_gap_minus_gmp_in_percent():
  key = "classify_then_pool_field-9_head-"
  sets = pc.planted_sets("gap_vs_gmp_localization", 0.0)
  with_values(sets, key + "gap", "max_box_acc_v2", [70.0, 72.0, 75.0], [62.0, 64.0, 66.0])
  with_values(sets, key + "gmp", "max_box_acc_v2", [40.0, 41.0, 42.0], [40.0, 40.0, 40.0])
  r = row(pc.compare("gap_vs_gmp_localization", sets), "max_box_acc_v2 (gap - gmp)", placement="classify_then_pool")
  assert r["zeros"]["values"] == pytest.approx([0.30, 0.31, 0.33])
  assert r["circular"]["values"] == pytest.approx([0.22, 0.24, 0.26])
  assert r["difference"]["values"] == pytest.approx([-0.08, -0.07, -0.07])
  assert r["outcome"] == "confound"


def test_sets_that_do_not_pair_are_refused():
  sets = pc.planted_sets("arrangement", 0.0)
  next(iter(sets[1][1]["configs"].values()))["num_train_steps"] = 7
  with pytest.raises(UserError, match="differ in more than the padding .*num_train_steps"):
    pc.compare("arrangement", sets)
  sets = pc.planted_sets("arrangement", 0.0)
  sets[1][1]["runs"]["head-gap_rf-27"][2]["pair_shortcut_rotation_pair"] += 0.01
  with pytest.raises(UserError, match="seed 2 measured its data differently"):
    pc.compare("arrangement", sets)


def test_the_comparison_writes_its_report_from_result_folders(tmp_path):
  with pytest.raises(UserError, match="has runs under both paddings"):
    pc.main(tmp_path / "out", quick=True, root=tmp_path)
  for name, move in (("arrangement", pc.PLANTED_MOVE), ("counterexample", 0.0)):
    for padding, (_, results) in zip(pc.PADDINGS, pc.planted_sets(name, move)):
      folder = tmp_path / pc.rerun_name(name, padding, True)
      folder.mkdir()
      (folder / "results.json").write_text(json.dumps(results))
  pc.main(tmp_path / "out", quick=True, root=tmp_path)
  written = json.loads((tmp_path / "out" / "confound.json").read_text())
  assert [c["outcome"] for c in written["comparisons"]] == ["confound", "not a confound", "not compared"]
  report = (tmp_path / "out" / "report.md").read_text()
  assert "| `arrangement` | **confound** |" in report and "pads nothing" in report
  assert (tmp_path / "out" / "difference_by_quantity.png").exists()


@pytest.mark.slow
def test_trained_reruns_pair_seed_by_seed(tmp_path):
  """Two real (tiny) runs of arrangement's first quick point, circular and zeros: seed s starts from the same
  weights on the same data under either padding, and the comparison accepts the pair."""
  from gap_jax.trained import initial, load_trained
  from test_experiments import tiny
  exp = experiments.get("arrangement")
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True))[:1])
  sets = []
  for padding, e in (("circular", small), ("zeros", with_padding(small, "zeros"))):
    sets.append((padding, run(e, tmp_path / padding, quick=True, seeds=2)))
  key = small.sweep(True)[0].key
  start = {(padding, s): initial(load_trained(run_dir(tmp_path / padding / "runs", small.sweep(True)[0], s)))
           for padding in ("circular", "zeros") for s in range(2)}
  import jax
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a.state.params, b.state.params)))
  assert same(start["circular", 0], start["zeros", 0]) and same(start["circular", 1], start["zeros", 1])
  assert not same(start["circular", 0], start["circular", 1])
  assert np.array_equal(start["circular", 1].data.train.images, start["zeros", 1].data.train.images)
  assert start["zeros", 0].config.padding == "zeros" and start["circular", 0].config.padding == "circular"
  rows = pc.compare("arrangement", sets)["quantities"]
  assert {r["quantity"] for r in rows} == {"rotation_pair", "control"} and all(r["where"]["receptive_field"] == 11
                                                                             for r in rows)
  assert key in sets[0][1]["points"]
