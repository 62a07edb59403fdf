"""Whether a training run converged, by a criterion declared with the experiment: its final train accuracy
reached a target, or its training stopped improving. The second is what makes a run at chance (a field too
small to see the class, where the claim predicts chance) count as trained rather than as cut short.

"Stopped improving" is judged in learning-rate time (the cumulative sum of the learning rate over the steps), not
in steps: under a cosine schedule the last fifth of the steps holds about 1% of the run's cumulative learning
rate, so a run cut short looks flat there (arrangement's zeros re-run sat at 0.79 train accuracy, flat in its
last steps, and passed a window in steps). The last fifth of the learning-rate time spans about the last half of a
cosine run's steps: a run still learning shows it there."""

import dataclasses
import json

from etils import epath


@dataclasses.dataclass(frozen=True)
class Convergence:
  train_accuracy: float = 0.99  # a run that fits its training data this well has converged
  # ... or one whose mean training loss fell, from the `window` of its learning-rate time before the last to the
  # last, by less than `plateau` times its first logged loss (relative to where it started: a loss near zero that
  # keeps halving under Adam has stopped learning anything the accuracy shows), while its logged train accuracy
  # rose by less than `accuracy_rise` (near chance the loss hardly moves while the accuracy climbs).
  # plateau=None asks only the accuracy: for an experiment whose measures are accuracies, a run whose accuracy
  # stopped rising has shown what it will show, while its loss may go on falling as the margins of what it
  # already tells apart grow (counterexample's 1 px field sits at its 2/3 ceiling with its loss still falling).
  plateau: float | None = 0.05
  accuracy_rise: float = 0.02
  window: float = 0.2

  def describe(self) -> str:
    loss = ("" if self.plateau is None else
            f"a training loss that fell by less than {self.plateau:.0%} of its first logged value and ")
    return (f"final train accuracy >= {self.train_accuracy}, or {loss}a logged train accuracy that rose by less "
            f"than {self.accuracy_rise} from the previous {self.window:.0%} to the last {self.window:.0%} of the "
            "run's cumulative learning rate")

  def converged(self, run: dict) -> bool:
    """`run`: its final train_accuracy, and its `trend` (loss_drop, accuracy_rise)."""
    return run["train_accuracy"] >= self.train_accuracy or (
        (self.plateau is None or run["loss_drop"] < self.plateau) and run["accuracy_rise"] < self.accuracy_rise)


# The criterion of the experiments whose measures are accuracies (counterexample, arrangement, position, gap_vs_fc);
# those that measure maps (absent_maps, rf_coverage, localization) keep the loss arm: margins are what they read.
ACCURACY_CONVERGENCE = Convergence(plateau=None)


def trend(metrics_file: epath.Path, window: float) -> dict[str, float]:
  """How the logged training loss and accuracy moved from the window before the last to the last window of the
  run's learning-rate time (fractions of the cumulative learning rate; steps where none was logged):
  loss_drop, the fall of the mean loss as a share of the first logged loss (negative when it rose), and
  accuracy_rise, the rise of the mean train accuracy. Both inf when there are too few log points to say."""
  records = [json.loads(line) for line in epath.Path(metrics_file).read_text().splitlines() if line.strip()]
  logged = [r for r in records if "train/loss" in r]
  unknown = {"loss_drop": float("inf"), "accuracy_rise": float("inf")}
  if not logged:
    return unknown
  time, previous_step, lr_time = 0.0, 0, []
  for r in logged:  # each record stands for the steps since the one before, at its learning rate
    time += r.get("train/learning_rate", 1.0) * (r["step"] - previous_step)
    previous_step = r["step"]
    lr_time.append(time)
  span = window * time
  last = [r for r, t in zip(logged, lr_time) if t > time - span]
  before = [r for r, t in zip(logged, lr_time) if time - 2 * span < t <= time - span]
  if not last or not before:
    return unknown

  def mean(rs, key):
    values = [r[key] for r in rs if key in r]
    return sum(values) / len(values) if values else float("nan")

  accuracy_rise = mean(last, "train/accuracy") - mean(before, "train/accuracy")
  return {"loss_drop": (mean(before, "train/loss") - mean(last, "train/loss")) / logged[0]["train/loss"],
          "accuracy_rise": accuracy_rise if accuracy_rise == accuracy_rise else float("inf")}  # nan: not logged
