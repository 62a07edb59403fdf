"""The flagship: why does global average pooling classify at all, when very different class maps can have
the same mean? It puts each part of the working answer to its experiment, in that experiment's quick
setting (3 seeds, under 15 minutes in all on 2 CPU cores), and writes one report that answers claim by
claim: results/why_gap_works/report.md and results.json. The component runs live in results/<name>-quick,
so `./launch.sh experiment <name> --quick` and this share (and reuse) them.

Run: ./launch.sh   (or ./launch.sh experiment why_gap_works)
"""

import json
import os
import time
from pathlib import Path

import experiments
from experiments import framework
from experiments.report import training_time
from experiments.verdicts import machine
from gap_jax.preemption import stop_request
from gap_jax.train import hardware

NAME = "why_gap_works"

QUESTION = """A GAP network sees only the mean of each class map, and these three maps all average to 0.5:

    0.9 0.1 0.9        0.1 0.9 0.1        0.5 0.5 0.5
    0.1 0.5 0.1        0.9 0.5 0.9        0.5 0.5 0.5
    0.9 0.1 0.9        0.1 0.9 0.1        0.5 0.5 0.5

So how can GAP tell "dog" from "cat" from "neither"?"""

ANSWER = ("Training drives the map of an absent class near zero everywhere and makes a present class fire at "
          "as many locations as its receptive field allows, so a mean is large only when the object is "
          "there; and the convolutions below encode local arrangement before pooling throws position away.")

# (claim, experiment that tests it, what a "supported" verdict adds to the answer), in the order the answer
# makes them: first the question's own example, then each part of the working answer.
CLAIMS = (
    ("The question's own maps, as images (corners, edges, uniform: one mean, and corners and edges one "
     "histogram): with a 1 px field GAP cannot tell corners from edges, and once its field spans a block and its "
     "neighbour it tells them apart.", "counterexample",
     "GAP classifies maps that share a mean because the convolutions below turn arrangement into how much a map "
     "fires, before the mean is taken"),
    ("An absent class's map lies below the present class's map everywhere (at zero behind the final ReLU): "
     "measured on map differences, which the loss determines.", "absent_maps",
     "an absent class's map lies below the present class's almost everywhere, so its mean stays low"),
    ("A present class fires at as many locations as the receptive field allows: its margin map spreads as "
     "the field grows, as wide as the object's passive overlap with the network's effective field.",
     "rf_coverage", "a present class's map fires over the object as far as the receptive field reaches"),
    ("The layers below GAP can encode arrangement: GAP separates a layout of identical motifs from its "
     "180-degree turn (the same pair statistics) once the receptive field covers the layout, and not before.",
     "arrangement", "arrangement beyond pairs of motifs is read only once one unit's field covers it"),
    ("GAP throws position away only where the convolutions do: with circular padding it cannot tell where a "
     "patch is, while zero padding lets position in once the field reaches the border.", "position",
     "padding, not the pool, is where position leaks in, so a verdict on arrangement must use circular padding"),
    ("Because it has no parameters and keeps every location's vote, GAP regularizes compared with a fully "
     "connected head (NiN section 4.6).", "gap_vs_fc", "GAP regularizes compared with a fully connected head"),
    ("Because the mean rewards firing over the whole object, GAP's maps localize it better than GMP's "
     "(CAM).", "gap_vs_gmp_localization", "GAP's maps localize the object better than GMP's"),
)


def run(out_dir: Path = Path("results") / NAME, seeds: int = 3, components_dir: Path = Path("results"),
        get=experiments.get, seeds_together: bool = False, workers: int = 1, started: float | None = None) -> dict:
  """Run (or reuse) every claim's quick experiment, then write the combined report. `get(name)` returns
  the Experiment to run (tests pass smaller ones); `seeds_together` trains each point's seeds together. When
  `workers` processes trained the runs first (run_shard), `started` is when they started."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  t0 = started or time.time()
  claims = []
  for i, claim, name, sub_dir in each_claim(components_dir):
    print(f"[{NAME}] claim {i + 1}/{len(CLAIMS)}: {name}", flush=True)
    r = framework.run(get(name), sub_dir, quick=True, seeds=seeds, seeds_together=seeds_together)
    claims.append({"claim": claim, "experiment": name, "hypothesis": r["hypothesis"],
                   "decision_rule": r["decision_rule"], "verdict": r["verdict"], "controls": r["controls"],
                   "seeds": seeds,
                   "runs": sum(len(v) for v in r["runs"].values()), "train_time_s": r["train_time_s"],
                   "runs_timed_in_part": r.get("runs_timed_in_part", 0),
                   "report": os.path.relpath(sub_dir / "report.md", out_dir),
                   "figures": [os.path.relpath(sub_dir / f, out_dir) for f in r["figures"]]})
  results = {"experiment": NAME, "question": QUESTION, "answer_under_test": ANSWER, "claims": claims,
             "wall_time_s": time.time() - t0, "workers": workers, "finished": time.strftime("%Y-%m-%d %H:%M %Z"),
             "hardware": hardware()}
  (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
  (out_dir / "report.md").write_text(render(results))
  print(f"[{NAME}] " + ", ".join(f"{c['experiment']}: {c['verdict']['verdict']}" for c in claims))
  print(f"[{NAME}] report: {out_dir / 'report.md'}")
  return results


def run_shard(shard: tuple[int, int], seeds: int = 3, components_dir: Path = Path("results"), get=experiments.get,
              seeds_together: bool = False) -> None:
  """Train and measure shard i of n of every claim's quick runs, in run()'s order, writing no report: one worker's
  part (experiments/workers.py); run() then writes every report from the finished runs."""
  for _, _, name, sub_dir in each_claim(components_dir):
    framework.run_shard(get(name), sub_dir, shard, quick=True, seeds=seeds, seeds_together=seeds_together,
                        report=False)


def each_claim(components_dir: Path):
  """(i, claim, experiment name, its quick runs' folder) for each claim in order. Under the command's stop request
  (experiments/__main__.py; else one for these sweeps): a SIGTERM during one claim's work lets it finish and
  starts no other."""
  with stop_request() as stop:
    for i, (claim, name, _) in enumerate(CLAIMS):
      if stop.requested:
        raise framework.SweepStopped(f"{stop.reason} before claim {i + 1}/{len(CLAIMS)} ({name}); the {i} finished "
                                     "are kept: run the same command to resume")
      yield i, claim, name, Path(components_dir) / f"{name}-quick"


def render(results: dict) -> str:
  claims = results["claims"]
  lines = ["# Why does global average pooling classify?", "", results["question"], "",
           f"**The answer under test.** {results['answer_under_test']}", "",
           "Each claim below was turned into an experiment with a hypothesis and a decision rule fixed before "
           "it ran (3 seeds per point, 95% t intervals), in its quick setting. Verdicts are the rules' "
           "output, including refutations.", "",
           "| # | claim | experiment | verdict | runs | training time |", "|---|---|---|---|---|---|"]
  for i, c in enumerate(claims, 1):
    lines.append(f"| {i} | {c['claim']} | [{c['experiment']}]({c['report']}) | **{c['verdict']['verdict']}** | "
                 f"{c['runs']} | {training_time(c, why=False)} |")
  counts = {v: sum(c["verdict"]["verdict"] == v for c in claims) for v in framework.VERDICTS}
  total = {k: sum(c.get(k, 0) for c in claims) for k in ("train_time_s", "runs_timed_in_part")}
  lines += ["", f"{counts['supported']} of {len(claims)} claims supported, {counts['refuted']} refuted, "
            f"{counts['inconclusive']} inconclusive. Training time of all runs {training_time(total)}; wall time "
            f"of the invocation that wrote this report {results['wall_time_s'] / 60:.1f} min{in_workers(results)} "
            f"(finished runs are reused, not rerun), finished {results['finished']} on {machine(results)}.", ""]
  for i, c in enumerate(claims, 1):
    lines += [f"## {i}. {c['experiment']}: {c['verdict']['verdict']}", "", f"**Claim.** {c['claim']}", "",
              f"**Hypothesis.** {c['hypothesis']}", "", f"**Decision rule.** {c['decision_rule']}", "",
              f"**Controls.** {controls_line(c['controls'])}", "",
              f"**Found.** {c['verdict']['reason']}", ""]
    effect = c["verdict"]["effect"]
    if effect:
      lines += ["Effect sizes: " + ", ".join(f"{k} = {v:.3g}" for k, v in effect.items()), ""]
    lines += [f"![{Path(f).name}]({f})" for f in c["figures"]]
    lines += ["", f"Full table: [{c['report']}]({c['report']})", ""]
  return "\n".join(lines + answer(claims))


def in_workers(results: dict) -> str:
  workers = results.get("workers", 1)  # reports written before --workers have none
  return f", the runs in {workers} worker processes" if workers > 1 else ""


def answer(claims: list[dict]) -> list[str]:
  """The closing paragraph: what the verdicts, and only they, say about why GAP classifies."""
  meaning = {name: adds for _, name, adds in CLAIMS}
  by = {v: [c for c in claims if c["verdict"]["verdict"] == v] for v in framework.VERDICTS}
  lines = ["## What the evidence says", ""]
  if by["supported"]:
    lines.append("Supported by these runs: " + "; ".join(
        f"{meaning.get(c['experiment'], c['claim'])} ({c['experiment']})" for c in by["supported"]) + ".")
  if by["refuted"]:
    lines.append("Refuted, so not part of the answer: " + "; ".join(
        f"that {meaning.get(c['experiment'], c['claim'])} ({c['experiment']})" for c in by["refuted"]) + ".")
  if by["inconclusive"]:
    lines.append("Not settled by these quick runs: " + ", ".join(c["experiment"] for c in by["inconclusive"]) +
                 " (each report says what its rule lacked).")
  return lines + ["", "These are quick settings (3 seeds); each experiment's full run is the stronger test.", ""]


def controls_line(controls: list[dict]) -> str:
  if not controls:
    return "none yet: this measure is not proven able to tell a true claim from a false one."
  return "; ".join(f"{c['name'].split(':')[0]} -> {c['verdict']} ({'as expected' if c['passed'] else 'FAILED'})"
                   for c in controls) + "."
