"""Checkpoints through orbax-checkpoint's CheckpointManager: asynchronous saves, the last few kept,
restore onto the shardings of a template state.

Orbax writes each step into a temporary directory and renames it when complete, so a write killed
half-way never looks like a checkpoint. A finished checkpoint that is damaged later (truncated file,
missing metadata) fails to restore: `restore_latest` then moves it aside into `corrupt_checkpoints/`
(nothing is deleted), says so, and falls back to the newest one that restores. A checkpoint that is
whole but does not fit the run's state (another model or head after --allow_config_change) is not
damage: restoring it stops with one error naming the difference, and every checkpoint stays in place.
A read that fails for a reason that may pass (an I/O error, a storage backend that is unavailable or
timed out) is retried with backoff and then reported, never taken for damage (`is_transient`).

The directory may be local or gs:// (an `etils.epath.Path`, as orbax takes it): orbax writes the arrays
through tensorstore's gcs driver and the rest through epath.
"""

import contextlib
import errno
import sys
import threading
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from gap_jax.errors import UserError
from gap_jax.workdir import is_remote, make_folder


COMMIT_MARKER = "commit_success.txt"  # orbax writes it last
RETRY_DELAYS_S = (1.0, 4.0, 16.0)  # waits between the attempts to read a checkpoint that failed transiently
TRANSIENT_ERRNOS = {errno.EIO, errno.EAGAIN, errno.EINTR, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET,
                    errno.ECONNABORTED, errno.ESTALE, errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTUNREACH}
# Status codes of tensorstore and cloud storage that say "try again", not "this file is bad".
TRANSIENT_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED")


def is_transient(error: BaseException) -> bool:
  """Whether a failed read may succeed if tried again, so the checkpoint must not be taken for damaged.
  Looks through the chain of causes: orbax and tensorstore wrap the OSError or status they met."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if isinstance(error, (TimeoutError, ConnectionError)):
      return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
      return True
    if any(str(error).lstrip().startswith(status) for status in TRANSIENT_STATUSES):
      return True
    error = error.__cause__ or error.__context__
  return False


# Orbax keeps process-global state for its asynchronous saves (one current operation id,
# orbax/checkpoint/_src/futures/synchronization.py), so two managers writing at once in one process (an
# experiment's runs, one per device, in threads) break each other's writes ("Directory not empty") or wait on
# each other forever (seen when two runs stopped by SIGTERM saved at the same step). So in a process one manager
# at a time uses orbax: a save, restore or close first lets another manager's save in flight finish. A process
# with one run keeps its saves asynchronous.
_ORBAX = threading.Lock()
_in_flight = None  # the Checkpoints whose last save may still be writing


class Checkpoints:
  def __init__(self, directory: epath.Path, keep: int):
    directory = epath.Path(directory)
    # Orbax wants an absolute local path; `absolute()` would turn gs://b/x into <cwd>/gs:/b/x.
    self.directory = directory if is_remote(directory) else directory.absolute()
    self._keep = keep
    self._failed = None  # its save's failure, met while another manager waited for it: raised by its next call
    self._manager = self._open()

  @contextlib.contextmanager
  def _alone(self):
    """Holds the process's orbax lock, after any other manager's save in flight has finished."""
    global _in_flight
    with _ORBAX:
      other = _in_flight
      if other is not None and other is not self:
        try:
          other._manager.wait_until_finished()
        except Exception as e:  # its own write's failure: reported by its own next save or close
          other._failed = e
        _in_flight = None
      if self._failed is not None:
        failed, self._failed = self._failed, None
        raise failed
      yield

  def _open(self):
    options = ocp.CheckpointManagerOptions(max_to_keep=self._keep, enable_async_checkpointing=True)
    # The handler named up front, so a freshly opened manager can read a checkpoint's metadata.
    return ocp.CheckpointManager(self.directory, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, clock: dict | None = None) -> None:
    """Save `state` at `step`, with `clock` (the run's training time so far, see `clock`) in its metadata."""
    global _in_flight
    with self._write_errors_explained(), self._alone():  # a failed asynchronous write surfaces at the next save
      # Orbax silently skips a save while the previous one is still being written; a slow disk must not
      # lose the checkpoint a SIGTERM asked for, so wait for it first (the write itself stays asynchronous).
      self._manager.wait_until_finished()
      if not self._manager.save(step, args=ocp.args.StandardSave(state), custom_metadata=clock):
        raise RuntimeError(f"orbax declined to save step {step}")
      _in_flight = self

  def clock(self, step: int) -> dict:
    """The training time a run had spent when it saved `step`: {"train_time_s", "train_time_from_step"}, the
    seconds since step train_time_from_step (0: since it began). A checkpoint saved before runs kept their time
    says nothing of the time before it: 0 s from its own step."""
    with self._alone():
      saved = self._manager.metadata(step).custom_metadata or {}
    return {"train_time_s": float(saved.get("train_time_s", 0.0)),
            "train_time_from_step": int(saved.get("train_time_from_step", step))}

  @contextlib.contextmanager
  def _write_errors_explained(self):
    try:
      yield
    except Exception as e:  # orbax/tensorstore wrap OS errors (disk full, permissions) in many types
      raise UserError(
          f"writing a checkpoint in {self.directory} failed ({' '.join(str(e).split())[:300]}); the "
          "earlier checkpoints there are intact: free disk space or fix the folder, then run the same "
          "command to resume") from None

  def _refuse_mismatch(self, step: int, like) -> None:
    """One UserError when the saved tree, shapes or dtypes differ from `like`'s. Read from the metadata
    orbax wrote, so nothing is restored (or moved aside) to find out."""
    shapes = lambda tree: {jax.tree_util.keystr(path): (tuple(x.shape), np.dtype(x.dtype).name)
                           for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
    saved = shapes(self._manager.item_metadata(step).tree)
    expected = shapes(ocp.tree.serialize_tree(like, keep_empty_nodes=True))
    show = lambda shape_dtype: f"{shape_dtype[0]} {shape_dtype[1]}" if shape_dtype else "nothing"
    differences = [f"{path}: saved {show(saved.get(path))}, this config makes {show(expected.get(path))}"
                   for path in sorted(saved.keys() | expected.keys()) if saved.get(path) != expected.get(path)]
    if differences:
      more = f" (and {len(differences) - 1} more differences)" if len(differences) > 1 else ""
      raise UserError(
          f"the checkpoint at step {step} in {self.directory} does not fit this config's state: "
          f"{differences[0]}{more}; every checkpoint is left in place: run with the config they were "
          "written with, or pass --fresh_start to keep that run in previous/ and start over")

  def restore(self, step: int, like):
    """The state saved at `step`, with the shapes, dtypes and shardings of `like`."""
    with self._alone():
      self._refuse_mismatch(step, like)
      abstract = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
      return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_latest(self, like):
    """(step, state) of the newest checkpoint that restores, or (0, like) when there is none."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      if not (self.directory / str(step) / COMMIT_MARKER).exists():
        self._quarantine(step, FileNotFoundError(f"no {COMMIT_MARKER}: the write never completed"))
        continue
      try:
        return step, self._restore_retrying(step, like)
      except UserError:  # whole but another model's, or unreadable for now: not damage, nothing is moved
        raise
      except Exception as e:  # orbax and tensorstore raise many types for damaged files
        self._quarantine(step, e)
    return 0, like

  def _restore_retrying(self, step: int, like):
    """`restore`, tried again after each of RETRY_DELAYS_S while it fails transiently; then one UserError."""
    for delay in (*RETRY_DELAYS_S, None):
      try:
        return self.restore(step, like)
      except UserError:
        raise
      except Exception as e:
        if not is_transient(e):
          raise
        if delay is None:
          raise UserError(
              f"reading the checkpoint at step {step} in {self.directory} kept failing "
              f"({type(e).__name__}: {' '.join(str(e).split())[:200]}) after {len(RETRY_DELAYS_S) + 1} "
              "attempts; it looks like a storage problem, not damage, so every checkpoint is left in "
              "place: run the same command again once the storage answers") from None
        print(f"warning: reading the checkpoint at step {step} failed ({type(e).__name__}: "
              f"{str(e).splitlines()[0][:200] if str(e) else ''}); trying again in {delay:g} s",
              file=sys.stderr)
        time.sleep(delay)

  def _quarantine(self, step: int, error: Exception) -> None:
    """Move a damaged checkpoint out of orbax's sight, keeping it for a human to inspect."""
    corrupt = self.directory.parent / "corrupt_checkpoints"
    make_folder(corrupt)
    target = corrupt / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    (self.directory / str(step)).rename(target)
    print(f"warning: checkpoint at step {step} does not restore ({type(error).__name__}: "
          f"{str(error).splitlines()[0][:200]}); moved to {target}, falling back to an earlier one",
          file=sys.stderr)
    self._manager.close()
    self._manager = self._open()

  def close(self) -> None:
    global _in_flight
    try:
      with self._write_errors_explained(), self._alone():
        self._manager.wait_until_finished()
    finally:
      with _ORBAX:
        if _in_flight is self:
          _in_flight = None
        self._manager.close()
