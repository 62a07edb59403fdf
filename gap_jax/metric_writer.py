"""Metrics to files a researcher can plot: JSON lines (metrics.jsonl) and TensorBoard event files
(tensorboardX, no TensorFlow needed), both in the workdir.

In a local workdir both are appended to in place, line by line. Object storage (gs://) cannot append, so
there both are written in a local staging folder (metrics.jsonl first copied down from the workdir, so a
resumed run goes on after the lines already there) and uploaded whole through epath every `upload_every_s`
seconds and at `close`: a process killed outright loses at most that long of metrics there."""

import json
import time

from etils import epath
from tensorboardX import SummaryWriter

from gap_jax.workdir import is_remote, staging_folder, unstage, upload

UPLOAD_EVERY_S = 30.0


class MetricWriter:
  def __init__(self, workdir: epath.Path | None, upload_every_s: float = UPLOAD_EVERY_S):
    self._workdir = epath.Path(workdir) if workdir else None
    if self._workdir is None:
      self._jsonl = self._tb = None
      return
    self._staging = staging_folder(self._workdir)
    self._remote = is_remote(self._workdir)
    if self._remote and (self._workdir / "metrics.jsonl").exists():
      (self._staging / "metrics.jsonl").write_bytes((self._workdir / "metrics.jsonl").read_bytes())
    self._jsonl = (self._staging / "metrics.jsonl").open("a")
    self._tb = SummaryWriter(str(self._staging / "tensorboard"))
    self._upload_every_s, self._uploaded = upload_every_s, time.monotonic()

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
    if self._remote and time.monotonic() - self._uploaded >= self._upload_every_s:
      self._upload()

  def _upload(self) -> None:
    self._tb.flush()
    upload(self._staging, self._workdir)
    self._uploaded = time.monotonic()

  def close(self) -> None:
    if self._jsonl is None:
      return
    self._jsonl.close()
    self._tb.close()
    unstage(self._staging, self._workdir)  # both files closed (flushed) above
