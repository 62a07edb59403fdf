"""The metrics a run writes can be read back by the tools a researcher plots with: every line of
metrics.jsonl is JSON, and TensorBoard's own reader finds the same scalars in the event files."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gap_jax.metric_writer import MetricWriter


def test_tensorboard_reads_what_jsonl_holds(tmp_path):
  writer = MetricWriter(tmp_path)
  written = {10: {"train/loss": 2.5, "train/accuracy": 0.25}, 20: {"train/loss": 1.25, "test/accuracy": 0.5}}
  for step, metrics in written.items():
    writer.write(step, metrics)
  writer.close()
  lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [(r["step"], {k: v for k, v in r.items() if "/" in k}) for r in lines] == list(written.items())
  events = EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  assert sorted(events.Tags()["scalars"]) == ["test/accuracy", "train/accuracy", "train/loss"]
  loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
  assert loss == [(10, pytest.approx(2.5)), (20, pytest.approx(1.25))]
