"""Each experiment's measure is proven on planted data before its verdict counts: its controls come out as
expected through its own decide, its quantities are ones the loss determines, and a failed control leaves
the verdict inconclusive."""

import dataclasses

import numpy as np
import pytest

import experiments
from experiments import absent_maps
from experiments.framework import Control, check_controls, run

WITH_CONTROLS = [name for name in experiments.NAMES if experiments.get(name).controls]


def test_the_redone_claims_have_controls():
  assert {"absent_maps", "rf_coverage"} <= set(WITH_CONTROLS)


def test_rf_coverage_turns_the_field_without_gridding():
  from experiments.rf_coverage import KERNEL, SCHEDULES
  from gap_jax.models.rfnet import gridded, receptive_field
  for rf, rates in SCHEDULES.items():
    assert receptive_field(len(rates), KERNEL, dilations=rates) == rf and not gridded(KERNEL, rates)
    assert len(rates) == 4  # fixed depth: the same parameters at every field


def test_rf_coverage_planted_field_is_the_stacked_kernels():
  """The planted effective field, stacked 3x3 kernels of ones, has per-axis variance 2/3 per unit of squared
  rate: sigma = sqrt(2/3 * sum(rate^2)), and its passive overlap is wider at a wider field."""
  from experiments.rf_coverage import SCHEDULES, planted_maps
  widths = []
  for rf, rates in SCHEDULES.items():
    m = planted_maps(np.random.default_rng(0), rf, obeys_claim=True)
    assert m["erf_width"] == pytest.approx(np.sqrt(2 / 3 * sum(d * d for d in rates)))
    assert m["width_over_passive"] == pytest.approx(1.0, abs=0.1)
    widths.append(m["passive_width"])
  assert widths == sorted(widths) and widths[-1] > widths[0] + 3


@pytest.mark.parametrize("name", WITH_CONTROLS)
def test_controls_pass_through_the_experiments_own_decide(name):
  checked = check_controls(experiments.get(name))
  assert {c["expected"] for c in checked} == {"supported", "refuted"}  # a positive and a negative
  assert all(c["passed"] for c in checked), checked


def test_absent_maps_measures_only_what_the_loss_determines():
  """Without the final ReLU, adding any map to every class's map changes no logit difference: no measure may
  move. The raw sign of a map (the old measure) does move, which is why it was replaced."""
  rng = np.random.default_rng(0)
  maps, labels = absent_maps.planted_maps(rng, obeys_claim=True, final_relu=False)
  shifted = maps + 10 * rng.standard_normal(maps.shape[:3] + (1,))
  assert absent_maps.measure_maps(maps, labels, False) == absent_maps.measure_maps(shifted, labels, False)
  absent = ~(np.arange(maps.shape[-1]) == labels[:, None, None, None])
  assert abs((maps[np.broadcast_to(absent, maps.shape)] <= 0).mean() -
             (shifted[np.broadcast_to(absent, maps.shape)] <= 0).mean()) > 0.01


def test_absent_maps_by_hand():
  # one image of class 0, two classes, 1x2 maps: the present map above at one location of two
  maps = np.array([[[[1.0, 0.0], [0.0, 2.0]]]])  # (1, 1, 2, 2): locations x classes
  m = absent_maps.measure_maps(maps, np.array([0]), final_relu=False)
  assert m["absent_below_present"] == 0.5 and m["logit_margin"] == pytest.approx(-0.5)
  behind_relu = absent_maps.measure_maps(np.maximum(maps - 1, 0), np.array([0]), final_relu=True)
  assert behind_relu["absent_below_present"] == 0.5 and behind_relu["absent_at_zero"] == 0.5


def test_a_failed_control_leaves_the_verdict_inconclusive(tmp_path):
  from test_experiments import tiny
  exp = experiments.get("absent_maps")
  positive = exp.controls()[0]
  wrong = Control("a positive wrongly expected refuted", "refuted", positive.summaries)
  def one_small_point(quick):
    point = tiny(exp.sweep(True))[0]
    point.config.model = "rfnet"  # a 1-layer network: what is tested is the framework, not the network
    point.config.model_args.rfnet.update(depth=1, width=8)
    return [point]
  small = dataclasses.replace(exp, sweep=one_small_point, controls=lambda: [wrong])
  results = run(small, tmp_path, quick=True, seeds=2)
  assert results["controls"][0]["passed"] is False
  assert results["verdict"]["verdict"] == "inconclusive"
  assert results["verdict"]["reason"].startswith("The measure failed its controls")
  report = (tmp_path / "report.md").read_text()
  assert "## Controls" in report and "| **no** |" in report
  assert report.index("## Controls") < report.index("## Results")
  # the null baseline: every measure of the same networks at initialization, in the results and the report
  point = next(iter(results["points"].values()))
  assert "untrained/absent_below_present" in point and "Null baseline" in report


def test_shortcut_baselines_see_a_brightness_class_and_not_an_arrangement():
  from experiments import shortcuts
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 400)
  bright = rng.normal(100 + 50 * y, 5)  # class = brightness: the image mean alone separates it
  assert shortcuts.gaussian_accuracy(bright[:200], y[:200], bright[200:], y[200:]) == 1.0
  same = rng.normal(100, 5, 400)  # one distribution for both classes: at most chance and noise
  assert shortcuts.gaussian_accuracy(same[:200], y[:200], same[200:], y[200:]) < 0.62


def test_wilson_interval_against_a_hand_computation_and_in_range():
  from experiments import stats
  lo, hi = stats.wilson(8, 10)  # p = 0.8, z = 1.96: centre 0.7167, half-width 0.2266
  assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3
  assert stats.wilson(10, 10)[1] == pytest.approx(1.0) and stats.wilson(0, 10)[0] == pytest.approx(0.0)


def test_bootstrap_interval_stays_inside_the_values():
  from experiments import stats
  values = [0.98, 0.99, 1.0, 1.0, 0.97]
  lo, hi = stats.bootstrap_mean(values)
  assert min(values) <= lo <= np.mean(values) <= hi <= max(values)


def test_equivalence_at_chance():
  from experiments import stats
  rng = np.random.default_rng(0)
  at_chance = 0.5 + 0.01 * rng.standard_normal(10)
  assert stats.equivalent(at_chance, 0.5, 0.05)
  assert not stats.equivalent(at_chance + 0.2, 0.5, 0.05)  # clearly off chance
  assert not stats.equivalent([0.4, 0.6, 0.5], 0.5, 0.05)  # too few, too noisy: not shown equivalent


def test_runs_below_the_train_accuracy_floor_are_left_out_and_counted():
  from experiments.framework import summarize_point
  runs = [{"train_accuracy": a, "test_accuracy": a} for a in (1.0, 0.995, 0.5)]
  s = summarize_point({}, runs, floor=0.99)
  assert s["below_floor"] == 1 and s["excluded"] == 1 and s["test_accuracy"]["n"] == 2 and s["learned"]
  dead = summarize_point({}, runs[1:] + [{"train_accuracy": 0.4, "test_accuracy": 0.4}], floor=0.999)
  assert dead["below_floor"] == 3 and dead["excluded"] == 0 and dead["test_accuracy"]["n"] == 3  # kept, flagged
  assert not dead["learned"]  # and left out of the verdict (framework.run)


def test_full_runs_get_intervals_that_stay_in_range_and_few_seeds_get_t():
  from experiments import stats
  near_one = [1.0] * 8 + [0.98, 0.99]
  full = stats.summarize(near_one)
  assert full["interval"] == "bootstrap" and min(near_one) <= full["lo"] <= full["hi"] <= 1.0
  assert stats.summarize(near_one[7:])["interval"] == "t"
  assert stats.summarize(near_one[7:])["hi"] > 1.0  # why a full run does not use t


def test_absent_maps_reports_a_dead_arm_instead_of_scoring_it():
  dead = absent_maps.controls()[2]
  verdict = absent_maps.decide(dead.summaries)
  assert verdict.verdict == "supported" and "Not scored: planted_final-relu-True_dead" in verdict.reason
  (key,) = [k for k in dead.summaries if k.endswith("_dead")]
  assert dead.summaries[key]["dead_class_maps"]["mean"] == 0.25  # one of four classes
  alive = absent_maps.controls()[0].summaries["planted_final-relu-True"]
  assert alive["dead_class_maps"]["mean"] == 0.0
