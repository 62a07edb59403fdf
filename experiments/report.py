"""report.md from an experiment's results: hypothesis, verdict, controls, method, tables (trained, and the
null baseline of the same networks at initialization), figures."""

from experiments.stats import BOOTSTRAP_FROM, fmt


def training_time(results: dict, digits: int = 1, why: bool = True) -> str:
  """'N min' of training; 'at least N min' (and why) when some runs resumed from checkpoints that kept no time,
  so their sessions before those checkpoints are not counted."""
  minutes, partial = f"{results['train_time_s'] / 60:.{digits}f} min", results.get("runs_timed_in_part", 0)
  if not partial:
    return minutes
  if not why:
    return f"at least {minutes}"
  return (f"at least {minutes} ({partial} of the runs resumed from checkpoints written before runs kept their "
          "training time: their sessions before those checkpoints are not counted)")


INTERVALS = {"bootstrap": f"percentile bootstrap, for {BOOTSTRAP_FROM} or more seeds", "t": "Student t"}


def render(results: dict) -> str:
  points = results["points"]
  metrics = list(results["metrics"])
  params = list(next(iter(points.values()))["params"])
  interval = " or ".join(INTERVALS[k] for k in sorted({p["test_accuracy"].get("interval", "t") for p in points.values()}))
  lines = [
      f"# {results['experiment']}", "",
      f"**Question.** {results['question']}", "",
      f"**Hypothesis.** {results['hypothesis']}", "",
      f"**Decision rule (fixed before the runs).** {results['decision_rule']}", "",
      f"## Verdict: {results['verdict']['verdict']}", "",
      results["verdict"]["reason"], "",
      "Effect sizes: " + ", ".join(f"{k} = {v:.3g}" for k, v in results["verdict"]["effect"].items()), ""]
  lines += controls_section(results.get("controls", []))
  lines += [
      "## Method", "",
      f"{len(points)} points x {results['seeds']} seeds, each a full run of `train_and_evaluate` "
      f"({'quick' if results['quick'] else 'full'} setting; configs in results.json). "
      f"Cells give the mean over seeds and its 95% interval ({interval}). Training time of the runs (each a whole "
      f"train_and_evaluate) {training_time(results)}; wall time of the invocation that wrote "
      f"this report {results['wall_time_s'] / 60:.1f} min (finished runs are reused, not rerun).",
      "", "Metrics:", ""]
  lines += [f"- `{m}`: {d}" for m, d in results["metrics"].items()]
  lines += ["", "## Results", ""] + table(points, params, metrics)
  below = {key: p for key, p in points.items() if p.get("below_floor")}
  if below:
    floor = results.get("train_accuracy_floor", 0.0)
    lines += ["", f"Runs below the train-accuracy floor ({floor}): " + "; ".join(
        f"{key}: {p['below_floor']} of {p['test_accuracy']['n'] + p['excluded']}" +
        (" (excluded)" if p["excluded"] else " (kept in the tables: fewer than 2 reached it, so this point did "
                                             "not learn and the verdict leaves it out)")
        for key, p in below.items())]
  if results.get("convergence"):
    lines += ["", convergence_line(points, results["convergence"], results["verdict"].get("rests_on"))]
  null = [m for m in metrics if f"untrained/{m}" in next(iter(points.values()))]
  if null:
    lines += ["", "Null baseline: the same networks at initialization (each run's own initial weights), "
              "measured the same way:", ""]
    lines += table(points, params, [f"untrained/{m}" for m in null])
  lines += shortcuts_section(points, params, results.get("shortcut_baselines", {}))
  if results["figures"]:
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in results["figures"]]
  return "\n".join(lines) + "\n"


def convergence_line(points: dict, criterion: str, rests_on: list[str] | None = None) -> str:
  """How many of each point's runs met the experiment's convergence criterion, and which points needed them."""
  short = {key: (int(sum(p["converged"]["values"])), p["converged"]["n"]) for key, p in points.items()
           if "converged" in p and sum(p["converged"]["values"]) < p["converged"]["n"]}
  if not short:
    return f"Every run converged ({criterion})."
  return (f"Converged ({criterion}): every run except at " +
          "; ".join(f"{key}: {done} of {n}" for key, (done, n) in short.items()) +
          " (a point " + (f"the verdict rests on ({', '.join(rests_on)}) " if rests_on else "") +
          "with fewer than 2 converged runs leaves the verdict inconclusive).")


def table(points: dict, params: list[str], metrics: list[str]) -> list[str]:
  lines = ["| " + " | ".join(params + metrics) + " |", "|" + "---|" * (len(params) + len(metrics))]
  for point in points.values():
    cells = [str(point["params"][p]) for p in params]
    cells += [fmt(point[m], 1, 3) if m in point else "" for m in metrics]
    lines.append("| " + " | ".join(cells) + " |")
  return lines


def controls_section(controls: list[dict]) -> list[str]:
  """The planted positive and negative controls, through the experiment's own decide, before any result."""
  if not controls:
    return ["## Controls", "", "This experiment has no planted controls yet: its measure is not proven able to "
            "tell a true claim from a false one, so read its verdict with that in mind.", ""]
  lines = ["## Controls", "", "Planted data run through the same measure and decision rule before the trained "
           "results: the rule must say the expected verdict of each.", "",
           "| control | expected | verdict | passed |", "|---|---|---|---|"]
  lines += [f"| {c['name']} | {c['expected']} | {c['verdict']} | {'yes' if c['passed'] else '**no**'} |"
            for c in controls]
  return lines + [""]


def shortcuts_section(points: dict, params: list[str], baselines: dict) -> list[str]:
  """Per point, what statistics that need no shape, arrangement or position already get on its data."""
  if not baselines:
    return []
  pairs = all("pair_statistics" in b for b in baselines.values())  # results written before it have none
  lines = ["", "Shortcut baselines of each point's data (experiments/shortcuts.py: one Gaussian per class on the "
           "image mean or the bright-pixel count" + ("; logistic regression on the counts of bright-pixel pairs "
           "at each offset up to 12 px" if pairs else "") + "), beside the trained networks' test accuracy:", "",
           "| " + " | ".join(params) + " | chance | image mean | bright pixels |" + (" pair statistics |" if pairs
                                                                                  else "") + " trained |",
           "|" + "---|" * (len(params) + 4 + pairs)]
  for key, point in points.items():
    b = baselines[key]
    lines.append("| " + " | ".join(str(point["params"][p]) for p in params) +
                 f" | {b['chance']:.3f} | {b['image_mean']:.3f} | {b['bright_pixels']:.3f} | " +
                 (f"{b['pair_statistics']:.3f} | " if pairs else "") + f"{fmt(point['test_accuracy'], 1, 3)} |")
  return lines
