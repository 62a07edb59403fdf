"""SIGTERM (SLURM preemption, TPU maintenance) asks the training loop to stop at a step boundary, after
saving a checkpoint; the process then exits 0 so the scheduler can requeue it.

With many processes every one must stop at the same step: a host that stops alone leaves the others waiting
in the next all-reduce or checkpoint barrier. There JAX's preemption service decides: the signal reaching
any process is passed to all of them, and `multihost_utils.reached_preemption_sync_point` turns true at one
agreed step (the largest step any process had reached, plus one) on each. With one process the signal
handler's flag decides alone.

Python runs signal handlers in the main thread only, so runs that train in other threads (an experiment's runs
spread over the devices, experiments/sweep_devices.py) share one StopRequest that the main thread entered: the
handler's flag reaches them all, and `request` lets the code that started them stop them too."""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class StopRequest:
  """While active, SIGTERM asks the loop to stop instead of killing the process: `reached(step)` says whether
  to save and stop after `step`, the same step on every process."""

  def __init__(self):
    self.requested = False
    self.reason = "SIGTERM"  # what asked, for the line each stopped run prints
    self._previous = None
    # Many processes: JAX's service catches SIGTERM itself (a Python handler would hide it from the service).
    self._agreed = jax.process_count() > 1

  def __enter__(self):
    if not self._agreed and threading.current_thread() is threading.main_thread():  # signals reach only it
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def request(self, reason: str) -> None:
    """Ask every run that shares this request to stop as SIGTERM would (single process only); the first
    reason given is the one the runs print."""
    if not self.requested:
      self.reason, self.requested = reason, True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step`; called once for every step by every process."""
    if self._agreed:
      self.requested = multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
