"""Checkpoints through orbax-checkpoint's CheckpointManager: asynchronous saves, the last few kept,
restore onto the shardings of a template state.

Orbax writes each step into a temporary directory and renames it when complete, so a write killed
half-way never looks like a checkpoint. A finished checkpoint that is damaged later (truncated file,
missing metadata) fails to restore: `restore_latest` then moves it aside into `corrupt_checkpoints/`
(nothing is deleted), says so, and falls back to the newest one that restores. A checkpoint that is
whole but does not fit the run's state (another model or head after --allow_config_change) is not
damage: restoring it stops with one error naming the difference, and every checkpoint stays in place.
"""

import contextlib
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from gap_jax.errors import UserError


COMMIT_MARKER = "commit_success.txt"  # orbax writes it last


class Checkpoints:
  def __init__(self, directory: Path, keep: int):
    self.directory = Path(directory).absolute()
    self._keep = keep
    self._manager = self._open()

  def _open(self):
    options = ocp.CheckpointManagerOptions(max_to_keep=self._keep, enable_async_checkpointing=True)
    # The handler named up front, so a freshly opened manager can read a checkpoint's metadata.
    return ocp.CheckpointManager(self.directory, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state) -> None:
    with self._write_errors_explained():  # a failed asynchronous write surfaces at the next save
      # Orbax silently skips a save while the previous one is still being written; a slow disk must not
      # lose the checkpoint a SIGTERM asked for, so wait for it first (the write itself stays asynchronous).
      self._manager.wait_until_finished()
      if not self._manager.save(step, args=ocp.args.StandardSave(state)):
        raise RuntimeError(f"orbax declined to save step {step}")

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
    self._refuse_mismatch(step, like)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def restore_latest(self, like):
    """(step, state) of the newest checkpoint that restores, or (0, like) when there is none."""
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        if not (self.directory / str(step) / COMMIT_MARKER).exists():
          raise FileNotFoundError(f"no {COMMIT_MARKER}: the write never completed")
        return step, self.restore(step, like)
      except UserError:  # whole but another model's: not damage, nothing is moved
        raise
      except Exception as e:  # orbax and tensorstore raise many types for damaged files
        self._quarantine(step, e)
    return 0, like

  def _quarantine(self, step: int, error: Exception) -> None:
    """Move a damaged checkpoint out of orbax's sight, keeping it for a human to inspect."""
    corrupt = self.directory.parent / "corrupt_checkpoints"
    corrupt.mkdir(exist_ok=True)
    target = corrupt / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    (self.directory / str(step)).rename(target)
    print(f"warning: checkpoint at step {step} does not restore ({type(error).__name__}: "
          f"{str(error).splitlines()[0][:200]}); moved to {target}, falling back to an earlier one",
          file=sys.stderr)
    self._manager.close()
    self._manager = self._open()

  def close(self) -> None:
    with self._write_errors_explained():
      self._manager.wait_until_finished()
    self._manager.close()
