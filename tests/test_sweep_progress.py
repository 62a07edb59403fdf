"""A sweep's progress line: runs done of all, and the ETA of the rest from the steps left at the rate this
invocation has trained (finished runs count as done and add nothing to the rate)."""

import ml_collections

from experiments import framework, progress
from experiments.framework import Point
from experiments.progress import SweepProgress


def test_the_eta_is_the_steps_left_at_the_rate_trained_so_far(monkeypatch):
  now = [0.0]
  monkeypatch.setattr(progress.time, "time", lambda: now[0])
  sweep = SweepProgress(steps_left=[100, 0, 300, 50], runs=[1, 1, 1, 1])
  assert sweep.start(0) == "run 1/4"  # nothing trained yet: no rate
  now[0] = 10.0
  sweep.finish(0)  # 100 steps in 10 s
  assert sweep.start(1) == "run 2/4, the sweep's ETA 0:00:35"  # 350 steps at 10 steps/s
  now[0] = 500.0  # a finished run found (0 steps): its time does not count
  sweep.finish(1)
  assert sweep.start(2) == "run 3/4, the sweep's ETA 0:00:35"
  now[0] = 530.0
  sweep.finish(2)  # 400 steps in 40 s
  assert sweep.start(3) == "run 4/4, the sweep's ETA 0:00:05"


def test_seeds_trained_together_and_epoch_configs():
  sweep = SweepProgress(steps_left=[30, None], runs=[3, 2])
  assert sweep.start(0) == "runs 1-3/5"
  sweep.finish(0)
  assert sweep.start(1) == "runs 4-5/5"  # its steps unknown (epochs): no ETA


def test_steps_left_count_checkpoints_and_finished_runs(tmp_path, monkeypatch):
  config = ml_collections.ConfigDict({"num_train_steps": 40, "seed": 0, "dataset": "synthetic"})
  point = Point("p", {}, config)
  for name in ("10", "20", "20.orbax-checkpoint-tmp-1"):  # a half-written save is not a step
    (framework.run_dir(tmp_path, point, 1) / "checkpoints" / name).mkdir(parents=True)
  monkeypatch.setattr(framework, "finished_measure", lambda point, seed, runs_dir: {} if seed == 2 else None)
  sweep = framework.progress_of([(point, [0]), (point, [1]), (point, [2]), (point, [0, 1])], tmp_path)
  assert sweep.steps_left == [40, 20, 0, 60] and sweep.runs == [1, 1, 1, 2]
