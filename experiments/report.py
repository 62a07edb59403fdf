"""report.md from an experiment's results: hypothesis, method, table, verdict, figures."""

from experiments.stats import fmt


def render(results: dict) -> str:
  points = results["points"]
  metrics = list(results["metrics"])
  params = list(next(iter(points.values()))["params"])
  lines = [
      f"# {results['experiment']}", "",
      f"**Question.** {results['question']}", "",
      f"**Hypothesis.** {results['hypothesis']}", "",
      f"**Decision rule (fixed before the runs).** {results['decision_rule']}", "",
      f"## Verdict: {results['verdict']['verdict']}", "",
      results["verdict"]["reason"], "",
      "Effect sizes: " + ", ".join(f"{k} = {v:.3g}" for k, v in results["verdict"]["effect"].items()), "",
      "## Method", "",
      f"{len(points)} points x {results['seeds']} seeds, each a full run of `train_and_evaluate` "
      f"({'quick' if results['quick'] else 'full'} setting; configs in results.json). "
      f"Cells give the mean over seeds and its 95% t interval. Training time of the runs (each a whole "
      f"train_and_evaluate) {results['train_time_s'] / 60:.1f} min; wall time of the invocation that wrote "
      f"this report {results['wall_time_s'] / 60:.1f} min (finished runs are reused, not rerun).",
      "", "Metrics:", ""]
  lines += [f"- `{m}`: {d}" for m, d in results["metrics"].items()]
  lines += ["", "## Results", "", "| " + " | ".join(params + metrics) + " |",
            "|" + "---|" * (len(params) + len(metrics))]
  for point in points.values():
    cells = [str(point["params"][p]) for p in params]
    cells += [fmt(point[m], 1, 3) if m in point else "" for m in metrics]
    lines.append("| " + " | ".join(cells) + " |")
  if results["figures"]:
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in results["figures"]]
  return "\n".join(lines) + "\n"
