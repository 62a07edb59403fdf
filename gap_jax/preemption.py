"""SIGTERM (SLURM preemption, TPU maintenance) asks the training loop to stop at a step boundary, after
saving a checkpoint; the process then exits 0 so the scheduler can requeue it.

With many processes every one must stop at the same step: a host that stops alone leaves the others waiting
in the next all-reduce or checkpoint barrier. There JAX's preemption service decides: the signal reaching
any process is passed to all of them, and `multihost_utils.reached_preemption_sync_point` turns true at one
agreed step (the largest step any process had reached, plus one) on each. With one process the signal
handler's flag decides alone.

Ctrl-C in a one-process command does the same: the first SIGINT stops the loop at the next step with its
checkpoint saved, and a second one interrupts at once (KeyboardInterrupt), as Python's default would. In a
multi-process job SIGINT keeps its default: the preemption service passes on SIGTERM alone, and a process that
stopped by itself would leave the others waiting.

Python runs signal handlers in the main thread only, so runs that train in other threads (an experiment's runs
spread over the devices, experiments/sweep_devices.py) share one StopRequest that the main thread entered: the
handler's flag reaches them all, and `request` lets the code that started them stop them too.

A command that does more than train (an experiment: sweeps, measures, reports; the flagship: seven of them)
enters one StopRequest for all its work, and every loop inside takes that one (`stop_request()`): a SIGTERM
between two trainings lets the current piece of work finish, and the loops start nothing new."""

import contextlib
import signal
import sys
import threading

import jax
from jax.experimental import multihost_utils


class StopRequest:
  """While active, SIGTERM (and, in one process, a first Ctrl-C) asks the loop to stop instead of killing the
  process: `reached(step)` says whether to save and stop after `step`, the same step on every process."""

  def __init__(self):
    self.requested = False
    self.reason = "SIGTERM"  # what asked, for the line each stopped run prints
    self._previous = None
    self._previous_sigint = None
    self._agreed = False
    self._main = False

  def __enter__(self):
    # Many processes: JAX's service catches SIGTERM itself (a Python handler would hide it from the service).
    # Decided on entry, from the distributed client alone: jax.process_count() would start the backend, which
    # an experiment command's request (entered before anything computes) must not do. Enter after
    # jax.distributed.initialize in a multi-process run (gap_jax/main.py does).
    self._agreed = jax.distributed.is_initialized()
    self._main = threading.current_thread() is threading.main_thread()  # signals reach only it
    if self._main:
      if not self._agreed:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        # Not where SIGINT is ignored (a background job: so do we) or handled outside Python (None: it could not
        # be put back).
        if signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None):
          self._previous_sigint = signal.signal(signal.SIGINT, self._interrupt)
      _ENTERED.append(self)
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def _interrupt(self, signum, frame):
    # The second Ctrl-C gets the handler this one replaced: Python's KeyboardInterrupt, or the caller's own.
    signal.signal(signal.SIGINT, self._previous_sigint)
    self.request("Ctrl-C")
    print("\nCtrl-C: stopping at the next step, with a checkpoint saved (Ctrl-C again quits at once)",
          file=sys.stderr, flush=True)

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
    if self._main:
      _ENTERED.remove(self)
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
    if self._previous_sigint is not None:
      if signal.getsignal(signal.SIGINT) == self._interrupt:  # else a first Ctrl-C already put it back
        signal.signal(signal.SIGINT, self._previous_sigint)
      self._previous_sigint = None


_ENTERED: list[StopRequest] = []  # entered in the main thread, innermost last


def stop_request() -> contextlib.AbstractContextManager[StopRequest]:
  """The request a command entered for all its work (experiments/__main__.py), else a new one for this block."""
  return contextlib.nullcontext(_ENTERED[-1]) if _ENTERED else StopRequest()
