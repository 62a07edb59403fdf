"""The convergence criterion: the trend arithmetic by hand (windows in learning-rate time), a cosine run cut
short is not converged, and a verdict that rests on runs which had not converged is inconclusive (framework.run
with its training replaced by recorded numbers)."""

import json
import math

import pytest

from experiments import framework
from experiments.convergence import ACCURACY_CONVERGENCE, Convergence, trend
from experiments.framework import Experiment, Point, Verdict
from gap_jax.configs import default


def write_losses(path, losses, every=20, accuracies=None, learning_rates=None):
  """A metrics.jsonl with a training record every `every` steps (accuracy 0.5 and no learning rate unless given)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = []
  for i, loss in enumerate(losses):
    record = {"step": every * (i + 1), "train/loss": loss,
              "train/accuracy": accuracies[i] if accuracies else 0.5}
    if learning_rates:
      record["train/learning_rate"] = learning_rates[i]
    lines.append(json.dumps(record))
  lines.append(json.dumps({"step": every * len(losses), "test/accuracy": 0.5}))
  path.write_text("\n".join(lines) + "\n")


def test_trend_by_hand_at_a_constant_learning_rate(tmp_path):
  # no learning rate logged: time is steps, 20..200; window 0.2 of 200 = 40: last window steps 180, 200, before 140, 160
  write_losses(tmp_path / "m.jsonl", [9, 9, 9, 9, 9, 9, 4.0, 2.0, 1.5, 0.5],
               accuracies=[0.1] * 6 + [0.3, 0.5, 0.6, 0.7])
  t = trend(tmp_path / "m.jsonl", 0.2)
  assert t["loss_drop"] == pytest.approx((3.0 - 1.0) / 9.0)  # of the first loss, 9
  assert t["accuracy_rise"] == pytest.approx(0.65 - 0.4)
  write_losses(tmp_path / "small.jsonl", [1.4, 0.8, 0.3, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02])  # near zero
  assert trend(tmp_path / "small.jsonl", 0.2)["loss_drop"] == pytest.approx((0.045 - 0.025) / 1.4)  # about 1%
  write_losses(tmp_path / "flat.jsonl", [1.1] * 10)
  assert trend(tmp_path / "flat.jsonl", 0.2) == {"loss_drop": 0.0, "accuracy_rise": 0.0}
  write_losses(tmp_path / "one.jsonl", [1.0])  # too few log points to tell
  assert trend(tmp_path / "one.jsonl", 0.2) == {"loss_drop": math.inf, "accuracy_rise": math.inf}


def test_windows_are_in_learning_rate_time(tmp_path):
  # 10 records of 20 steps; the learning rate is 1 for the first 8 and 0.1 for the last 2: cumulative time
  # 20, 40, ..., 160, 162, 164. Window 0.2 of 164 = 32.8: last window time > 131.2 -> records at 140, 160, 162,
  # 164 (the 7th to 10th); before: 98.4 < time <= 131.2 -> the 5th and 6th (100, 120).
  write_losses(tmp_path / "m.jsonl", [5, 5, 5, 5, 4, 4, 3, 2, 2, 2], learning_rates=[1] * 8 + [0.1] * 2)
  assert trend(tmp_path / "m.jsonl", 0.2)["loss_drop"] == pytest.approx((4 - 2.25) / 5)


def test_a_cosine_run_cut_short_has_not_converged(tmp_path):
  """Loss falling steadily in learning-rate time, cut off by a cosine schedule: flat in its last fifth of steps
  (what the old criterion read as a plateau), still falling in its last fifth of learning-rate time."""
  steps = 50
  lr = [0.5 * (1 + math.cos(math.pi * (i + 1) / steps)) for i in range(steps)]
  time = [sum(lr[:i + 1]) for i in range(steps)]
  losses = [1.0 - 0.6 * t / time[-1] for t in time]  # linear in learning-rate time: never levels off
  accuracies = [0.5 + 0.3 * t / time[-1] for t in time]  # ends at 0.8, like arrangement's zeros re-run
  write_losses(tmp_path / "cut.jsonl", losses, accuracies=accuracies, learning_rates=lr)
  t = trend(tmp_path / "cut.jsonl", 0.2)
  assert t["loss_drop"] > 0.1 and t["accuracy_rise"] > 0.05
  assert not Convergence().converged({"train_accuracy": 0.8, **t})
  last_fifth_of_steps = losses[-steps // 5:]  # where a window in steps looks: barely moving
  assert last_fifth_of_steps[0] - last_fifth_of_steps[-1] < 0.05 * losses[0]


def test_criterion():
  c = Convergence(train_accuracy=0.99, plateau=0.05, accuracy_rise=0.02)
  assert c.converged({"train_accuracy": 0.995, "loss_drop": 0.5, "accuracy_rise": 0.3})  # fits its data
  assert c.converged({"train_accuracy": 0.5, "loss_drop": 0.01, "accuracy_rise": 0.005})  # at chance, done learning
  assert not c.converged({"train_accuracy": 0.8, "loss_drop": 0.2, "accuracy_rise": 0.0})  # loss still falling
  # near chance the loss hardly moves while the accuracy climbs (position's zeros padding at a 7 px field)
  assert not c.converged({"train_accuracy": 0.66, "loss_drop": 0.006, "accuracy_rise": 0.1})


def test_accuracy_only_criterion_for_experiments_that_measure_accuracies(tmp_path):
  """Shaped like counterexample's 1 px GAP runs: accuracy at the 2/3 ceiling from a fifth of the run on, while the
  loss keeps falling (uniform vs the rest grows its margins; corners vs edges cannot leave chance)."""
  steps = 30
  lr = [0.5 * (1 + math.cos(math.pi * (i + 1) / steps)) for i in range(steps)]
  losses = [1.1 - 0.5 * i / steps for i in range(steps)]
  accuracies = [0.33 if i < steps // 5 else 0.667 + 0.005 * (-1) ** i for i in range(steps)]
  write_losses(tmp_path / "m.jsonl", losses, accuracies=accuracies, learning_rates=lr)
  t = trend(tmp_path / "m.jsonl", 0.2)
  assert t["loss_drop"] > 0.05 and abs(t["accuracy_rise"]) < 0.02
  assert ACCURACY_CONVERGENCE.converged({"train_accuracy": 0.67, **t})
  assert not Convergence().converged({"train_accuracy": 0.67, **t})  # the loss arm: margins still growing
  assert not ACCURACY_CONVERGENCE.converged({"train_accuracy": 0.66, "loss_drop": 0.01, "accuracy_rise": 0.1})
  assert "loss" not in ACCURACY_CONVERGENCE.describe() and "loss" in Convergence().describe()


def fake_run(tmp_path, monkeypatch, losses_by_point, rests_on=None):
  """framework.run on points whose 'training' writes the given losses; decide always says supported (resting on
  `rests_on`, default every point)."""
  def run_seeds(exp, point, seeds, runs_dir, stop=None):
    for seed in seeds:
      write_losses(runs_dir / point.key / f"seed{seed}" / "metrics.jsonl", losses_by_point[point.key])
    return [{"test_accuracy": 0.6, "train_accuracy": 0.6, "train_time_s": 1.0, "train_time_from_step": 0,
             "score": 1.0 + seed} for seed in seeds]
  monkeypatch.setattr(framework, "run_seeds", run_seeds)
  monkeypatch.setattr(framework, "shortcut_baselines", lambda points: {})
  exp = Experiment(
      name="fake", question="q", hypothesis="h", metrics={"score": "s"}, decision_rule="r",
      sweep=lambda quick: [Point(key, {"k": key}, default.get_config()) for key in losses_by_point],
      measure=None, decide=lambda summaries: Verdict("supported", "because", {}, rests_on), convergence=Convergence())
  return framework.run(exp, tmp_path, seeds=3)


def test_a_verdict_on_runs_still_learning_is_inconclusive(tmp_path, monkeypatch):
  results = fake_run(tmp_path, monkeypatch, {"done": [2.0] * 10, "learning": [2.0, 1.8, 1.6, 1.4, 1.2, 1.0,
                                                                              0.8, 0.6, 0.4, 0.2]})
  assert results["points"]["done"]["converged"]["values"] == [1.0, 1.0, 1.0]
  assert results["points"]["learning"]["converged"]["values"] == [0.0, 0.0, 0.0]
  assert results["verdict"]["verdict"] == "inconclusive"
  assert "Fewer than 2 runs converged" in results["verdict"]["reason"] and "learning" in results["verdict"]["reason"]
  assert "every run except at learning: 0 of 3" in (tmp_path / "report.md").read_text()


def test_only_the_points_a_verdict_rests_on_need_converged_runs(tmp_path, monkeypatch):
  learning = [2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.8, 0.6, 0.4, 0.2]
  results = fake_run(tmp_path, monkeypatch, {"done": [2.0] * 10, "learning": learning}, rests_on=["done"])
  assert results["verdict"]["verdict"] == "supported"  # "learning" is reported, and decides nothing
  assert "learning: 0 of 3 (a point the verdict rests on (done) with" in (tmp_path / "report.md").read_text()
  results = fake_run(tmp_path / "b", monkeypatch, {"done": [2.0] * 10, "learning": learning}, rests_on=["learning"])
  assert results["verdict"]["verdict"] == "inconclusive"


def test_a_verdict_on_converged_runs_stands(tmp_path, monkeypatch):
  results = fake_run(tmp_path, monkeypatch, {"a": [2.0] * 10, "b": [1.0] * 10})
  assert results["verdict"]["verdict"] == "supported"
  assert "Every run converged" in (tmp_path / "report.md").read_text()
  assert results["hardware"]["versions"]["jax"] and results["finished"]


def test_every_experiment_declares_its_convergence_criterion():
  import experiments
  assert all(experiments.get(name).convergence for name in experiments.NAMES)
