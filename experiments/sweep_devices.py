"""An experiment's (point, seed) runs spread over this process's devices: one thread per local device takes the
next run from a shared queue and trains it on that device alone (gap_jax.parallel.use_devices), so as many runs
train at once as there are devices; JAX releases the GIL while a device computes. A run on a one-device mesh is
the computation it would be in a process that has only that device, so its numbers do not depend on where it ran.

Signals reach only the main thread: it holds the one StopRequest that every run shares, so a SIGTERM stops each
run in training at its next step with its checkpoint saved, and no further run starts. A run that fails stops
the others the same way, and its error is raised once they have all stopped: the first failing run's in sweep
order, as training them one after another would have raised it."""

import collections
import threading
from collections.abc import Callable, Sequence

import jax

from gap_jax import parallel
from gap_jax.preemption import stop_request


def spread_devices(data_parallel_runs: bool = False) -> list | None:
  """The devices to spread an experiment's runs over, one run on each at a time; None to train each run over
  every device, one run after another: when asked to (`data_parallel_runs`, for runs too large for one device),
  with one local device, or with several processes (each must then take part in every run)."""
  devices = jax.local_devices()
  if data_parallel_runs or jax.process_count() > 1 or len(devices) < 2:
    return None
  return devices


def map_on_devices(fn: Callable, items: Sequence, devices: Sequence) -> list:
  """[fn(item, device, stop) for item in items], in that order, each call in the thread of one of `devices`,
  inside parallel.use_devices([device]); `stop` is the StopRequest the calls share, to pass to
  train_and_evaluate. A call that returns None was stopped (its checkpoint saved); once the stop is requested
  no item starts, and its place stays None."""
  results, errors = [None] * len(items), {}
  queue = collections.deque(range(len(items)))  # popleft is atomic: each item goes to one thread

  def work(device):
    with parallel.use_devices([device]):
      while not stop.requested:
        try:
          i = queue.popleft()
        except IndexError:
          return
        try:
          results[i] = fn(items[i], device, stop)
        except BaseException as e:  # raised by the main thread once every run has stopped
          errors[i] = e
          stop.request(f"stopped because another run failed ({type(e).__name__})")

  with stop_request() as stop:  # entered here, in the main thread, where the SIGTERM handler must live
    threads = [threading.Thread(target=work, args=(d,), name=f"runs on {d}") for d in devices]
    for t in threads:
      t.start()
    try:
      for t in threads:
        while t.is_alive():
          # Timed: Python runs a signal's handler only when the main thread runs bytecode, and the kernel may
          # hand SIGTERM to any thread (a run's, XLA's): an untimed join would hold the handler until every
          # run has finished.
          t.join(timeout=0.1)
    except BaseException:  # a second Ctrl-C (the first is a stop request): the runs save before it propagates
      stop.request("KeyboardInterrupt")
      for t in threads:
        t.join()
      raise
  if errors:
    raise errors[min(errors)]
  return results
