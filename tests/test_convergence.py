"""The convergence criterion: the loss-plateau arithmetic by hand, and a verdict that rests on runs which had
not converged is inconclusive (framework.run with its training replaced by recorded numbers)."""

import json

import pytest

from experiments import framework
from experiments.convergence import Convergence, loss_drop
from experiments.framework import Experiment, Point, Verdict
from gap_jax.configs import default


def write_losses(path, losses, every=20):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps({"step": every * (i + 1), "train/loss": loss}) + "\n"
                          for i, loss in enumerate(losses)) + json.dumps({"step": every * len(losses),
                                                                          "test/accuracy": 0.5}) + "\n")


def test_loss_drop_by_hand(tmp_path):
  # steps 20..200; window 0.2 of 200 steps = 40: the last window is steps 180, 200, the one before 140, 160
  write_losses(tmp_path / "m.jsonl", [9, 9, 9, 9, 9, 9, 4.0, 2.0, 1.5, 0.5])
  assert loss_drop(tmp_path / "m.jsonl", 0.2) == pytest.approx((3.0 - 1.0) / 9.0)  # of the first loss, 9
  write_losses(tmp_path / "small.jsonl", [1.4, 0.8, 0.3, 0.1, 0.08, 0.06, 0.05, 0.04, 0.03, 0.02])  # near zero
  assert loss_drop(tmp_path / "small.jsonl", 0.2) == pytest.approx((0.045 - 0.025) / 1.4)  # about 1%: done
  write_losses(tmp_path / "flat.jsonl", [1.1] * 10)
  assert loss_drop(tmp_path / "flat.jsonl", 0.2) == 0.0
  write_losses(tmp_path / "one.jsonl", [1.0])  # too few log points to tell
  assert loss_drop(tmp_path / "one.jsonl", 0.2) == float("inf")


def test_criterion():
  c = Convergence(train_accuracy=0.99, plateau=0.05)
  assert c.converged({"train_accuracy": 0.995, "loss_drop": 0.5})  # fits its data
  assert c.converged({"train_accuracy": 0.5, "loss_drop": 0.01})  # at chance, but done learning
  assert not c.converged({"train_accuracy": 0.8, "loss_drop": 0.2})  # still learning


def fake_run(tmp_path, monkeypatch, losses_by_point):
  """framework.run on two points whose 'training' writes the given losses; decide always says supported."""
  def run_point(exp, point, seed, runs_dir):
    write_losses(runs_dir / point.key / f"seed{seed}" / "metrics.jsonl", losses_by_point[point.key])
    return {"test_accuracy": 0.6, "train_accuracy": 0.6, "train_time_s": 1.0, "score": 1.0 + seed}
  monkeypatch.setattr(framework, "run_point", run_point)
  monkeypatch.setattr(framework, "shortcut_baselines", lambda points: {})
  exp = Experiment(
      name="fake", question="q", hypothesis="h", metrics={"score": "s"}, decision_rule="r",
      sweep=lambda quick: [Point(key, {"k": key}, default.get_config()) for key in losses_by_point],
      measure=None, decide=lambda summaries: Verdict("supported", "because", {}), convergence=Convergence())
  return framework.run(exp, tmp_path, seeds=3)


def test_a_verdict_on_runs_still_learning_is_inconclusive(tmp_path, monkeypatch):
  results = fake_run(tmp_path, monkeypatch, {"done": [2.0] * 10, "learning": [2.0, 1.8, 1.6, 1.4, 1.2, 1.0,
                                                                              0.8, 0.6, 0.4, 0.2]})
  assert results["points"]["done"]["converged"]["values"] == [1.0, 1.0, 1.0]
  assert results["points"]["learning"]["converged"]["values"] == [0.0, 0.0, 0.0]
  assert results["verdict"]["verdict"] == "inconclusive"
  assert "Fewer than 2 runs converged" in results["verdict"]["reason"] and "learning" in results["verdict"]["reason"]
  assert "every run except at learning: 0 of 3" in (tmp_path / "report.md").read_text()


def test_a_verdict_on_converged_runs_stands(tmp_path, monkeypatch):
  results = fake_run(tmp_path, monkeypatch, {"a": [2.0] * 10, "b": [1.0] * 10})
  assert results["verdict"]["verdict"] == "supported"
  assert "Every run converged" in (tmp_path / "report.md").read_text()
  assert results["hardware"]["versions"]["jax"] and results["finished"]


def test_every_experiment_declares_its_convergence_criterion():
  import experiments
  assert all(experiments.get(name).convergence for name in experiments.NAMES)
