"""SIGTERM (SLURM preemption, TPU maintenance) asks the training loop to stop at the next step
boundary, after saving a checkpoint; the process then exits 0 so the scheduler can requeue it."""

import signal
import threading


class StopRequest:
  """While active, SIGTERM sets `requested` instead of killing the process."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
