"""Metrics to files a researcher can plot: JSON lines (metrics.jsonl) and TensorBoard event files
(tensorboardX, no TensorFlow needed), both in the workdir."""

import json
import time
from pathlib import Path

from tensorboardX import SummaryWriter


class MetricWriter:
  def __init__(self, workdir: Path | None):
    self._jsonl = open(Path(workdir) / "metrics.jsonl", "a") if workdir else None
    self._tb = SummaryWriter(str(Path(workdir) / "tensorboard")) if workdir else None

  @classmethod
  def discarding(cls) -> "MetricWriter":
    """For the non-primary processes of a multi-host run: one host writes the metrics."""
    return cls(None)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if self._jsonl is None:
      return
    record = {"step": step, "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(name, float(value), step)

  def close(self) -> None:
    if self._jsonl is None:
      return
    self._jsonl.close()
    self._tb.close()
