"""Whether a training run converged, by a criterion declared with the experiment: its final train accuracy
reached a target, or its training loss stopped falling. The second is what makes a run at chance (a field too
small to see the class, where the claim predicts chance) count as trained rather than as cut short."""

import dataclasses
import json

from etils import epath


@dataclasses.dataclass(frozen=True)
class Convergence:
  train_accuracy: float = 0.99  # a run that fits its training data this well has converged
  # ... or one whose mean training loss fell, from the `window` of its steps before the last to the last, by less
  # than `plateau` times its first logged loss (relative to where it started: a loss near zero that keeps
  # halving under Adam has stopped learning anything the accuracy shows).
  plateau: float = 0.05
  window: float = 0.2

  def describe(self) -> str:
    return (f"final train accuracy >= {self.train_accuracy}, or a training loss that fell by less than "
            f"{self.plateau:.0%} of its first logged value from the previous {self.window:.0%} of the steps to the "
            f"last {self.window:.0%}")

  def converged(self, run: dict) -> bool:
    return run["train_accuracy"] >= self.train_accuracy or run["loss_drop"] < self.plateau


def loss_drop(metrics_file: epath.Path, window: float) -> float:
  """Fall of the mean logged training loss from the window before the last to the last window of steps
  (fractions of the run), as a share of the first logged loss. Negative when the loss rose; inf when there are
  too few log points to say."""
  records = [json.loads(line) for line in epath.Path(metrics_file).read_text().splitlines() if line.strip()]
  losses = [(r["step"], r["train/loss"]) for r in records if "train/loss" in r]
  if not losses:
    return float("inf")
  last_step = losses[-1][0]
  span = window * last_step
  last = [loss for step, loss in losses if step > last_step - span]
  before = [loss for step, loss in losses if last_step - 2 * span < step <= last_step - span]
  if not last or not before:
    return float("inf")
  mean_before, mean_last = sum(before) / len(before), sum(last) / len(last)
  return (mean_before - mean_last) / losses[0][1]
