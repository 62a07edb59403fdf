"""A sweep's progress as a whole, for the line printed before each of its runs: how many runs are done and, once
one has trained in this invocation, when the rest should be: the steps left (a run's config, less the steps its
checkpoint already holds) at the steps per second this invocation has trained so far. A sweep of hours (gap_vs_fc's
90 runs of 1,000 to 5,000 steps) says when it ends, not only when its current run does."""

import dataclasses
import time

from etils import epath

from gap_jax.train import hms


def steps_done(workdir: epath.Path) -> int:
  """The step of a run's latest checkpoint, 0 without one (the folder orbax names by its step)."""
  folder = epath.Path(workdir) / "checkpoints"
  return max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=0) if folder.exists() else 0


@dataclasses.dataclass
class SweepProgress:
  """`steps_left[i]`: the training steps group i still needs (None where a config sets epochs, not steps: then no
  ETA); `runs[i]`: its number of runs."""
  steps_left: list[int | None]
  runs: list[int]
  trained_steps: int = 0
  trained_s: float = 0.0
  _started: float | None = None

  def start(self, i: int) -> str:
    """The progress to print as group i starts: runs done of all, and the ETA of the rest once known."""
    self._started = time.time()
    done, total = sum(self.runs[:i]), sum(self.runs)
    line = f"run {done + 1}/{total}" if self.runs[i] == 1 else f"runs {done + 1}-{done + self.runs[i]}/{total}"
    left = self.steps_left[i:]
    if self.trained_steps and None not in left:
      line += f", the sweep's ETA {hms(sum(left) * self.trained_s / self.trained_steps)}"
    return line

  def finish(self, i: int) -> None:
    """Group i has finished (or was found finished): its steps and time count toward the rate."""
    if self.steps_left[i]:
      self.trained_steps += self.steps_left[i]
      self.trained_s += time.time() - self._started
