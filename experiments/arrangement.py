"""The counterexample: classes that differ only in how identical motifs are arranged (x vs plus vs
scattered, five motifs each, equal mean intensity). GAP sees only means of class maps, so it can only
classify if some unit's receptive field spans enough of the arrangement to tell the layouts apart.

Known limitation: the span is not the field the data needs. The classes differ in how many motifs neighbour
each other (orthogonally, CELL px apart, and diagonally), so counts of bright-pixel pairs at offsets up to
10-12 px, pooled over the image, already classify them. experiments/shortcuts.py's pair statistics (a
13 px field) reach 0.98 on 600 training and 300 test images at this CELL and MOTIF (0.998 at 2048/1024),
0.93 with offsets up to 8 px (the 9 px field), while the image mean stays at chance (0.37). So GAP at the
17 px field, below the SPAN, can be near perfect without seeing any arrangement, and accuracy, the only
measure here, cannot tell that from seeing it: a "refuted" says the span is not needed, not that GAP needs
no field. The shortcut is why the experiment is to be redone on classes pair statistics cannot tell (e.g.
each other's 180-degree rotation)."""

import ml_collections
import numpy as np

from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.stats import cohens_d, fmt
from gap_jax.models.rfnet import receptive_field

# Two layers, so that dilation 1 gives a field (5 px) that cannot reach from one motif to the next (8 px
# apart): the first quick run, at depth 4, started at 9 px, which already sees neighbouring motifs.
CELL, MOTIF, DEPTH, KERNEL = 8, 3, 2, 3
SPAN = 2 * CELL + MOTIF  # pixels from the first motif's edge to the last's
CHANCE = 1 / 3
HEADS, DILATIONS = ("gap", "gmp", "fc"), (1, 2, 4, 8)  # fields 5, 9, 17, 33 px


def config(head: str, dilation: int, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", head, "arrangement", 150 if quick else 300, dilation=dilation, depth=DEPTH, width=16)
  c.final_relu = False  # unconstrained maps; a ReLU'd map can die in a short run
  c.dropout = 0.0
  c.arrangement.cell, c.arrangement.motif = CELL, MOTIF
  c.arrangement.num_train = 2048 if quick else 4096
  return c


def sweep(quick: bool) -> list[Point]:
  heads = ("gap", "fc") if quick else HEADS
  dilations = (1, 8) if quick else DILATIONS
  return [Point(f"head-{h}_dilation-{d}", params(h, d), config(h, d, quick)) for h in heads for d in dilations]


def params(head: str, dilation: int) -> dict:
  """A point's params, shared by the sweep and the planted controls so decide reads both alike."""
  return {"head": head, "dilation": dilation, "receptive_field": receptive_field(DEPTH, KERNEL, dilation)}


def measure(point, trained) -> dict:
  return {}  # accuracy is what this experiment needs; the framework records it


def decide(summaries: dict) -> Verdict:
  gap = sorted((p for p in summaries.values() if p["params"]["head"] == "gap"),
               key=lambda p: p["params"]["receptive_field"])
  fc = sorted((p for p in summaries.values() if p["params"]["head"] == "fc"),
              key=lambda p: p["params"]["receptive_field"])
  below = [p for p in gap if p["params"]["receptive_field"] < SPAN]
  above = [p for p in gap if p["params"]["receptive_field"] >= SPAN]
  if not below or not above or not fc:
    return Verdict("inconclusive", "the sweep lacks a GAP point on one side of the span, or an FC point", {})
  b, a, f = below[-1]["test_accuracy"], above[0]["test_accuracy"], fc[0]["test_accuracy"]
  effect = {"gap_accuracy_gain_when_rf_covers": a["mean"] - b["mean"],
            "cohens_d_gap_above_vs_below": cohens_d(a["values"], b["values"]),
            "fc_minus_gap_at_smallest_rf": f["mean"] - gap[0]["test_accuracy"]["mean"]}
  rf_b, rf_a = below[-1]["params"]["receptive_field"], above[0]["params"]["receptive_field"]
  every = ", ".join(f"{p['test_accuracy']['mean']:.3f} at {p['params']['receptive_field']} px" for p in gap)
  reason = (f"GAP test accuracy {fmt(b, digits=3)} with RF {rf_b} px < span "
            f"{SPAN} px, {fmt(a, digits=3)} with RF {rf_a} px >= span (every RF: "
            f"{every}); FC at the smallest RF ({fc[0]['params']['receptive_field']} px): {f['mean']:.3f}; "
            f"neighbouring motifs {CELL} px apart; chance {CHANCE:.3f}.")
  if b["hi"] < CHANCE + 0.2 and a["lo"] > 0.9:
    return Verdict("supported", reason, effect)
  if b["lo"] > 0.9 or a["hi"] < CHANCE + 0.2:
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def planted_summaries(gap_accuracy, seed: int = 0, seeds: int = 5) -> dict:
  """Summaries of the full sweep from planted per-seed accuracies: GAP and GMP drawn around
  `gap_accuracy(receptive_field)`, FC near perfect at every field (it keeps positions). Each draw is one
  uniform, so controls made from the same seed differ only where their levels do."""
  rng = np.random.default_rng(seed)
  near = {"chance": (CHANCE - 0.03, CHANCE + 0.06), "partial": (0.65, 0.8), "perfect": (0.95, 1.0)}
  points = {}
  for h in HEADS:
    for d in DILATIONS:
      p = params(h, d)
      level = "perfect" if h == "fc" else gap_accuracy(p["receptive_field"])
      runs = [{"test_accuracy": rng.uniform(*near[level]), "train_accuracy": rng.uniform(*near[level])}
              for _ in range(seeds)]
      points[f"head-{h}_dilation-{d}"] = summarize_point(p, runs)
  return points


def controls() -> list[Control]:
  obeys = planted_summaries(lambda rf: "perfect" if rf >= SPAN else "chance")
  shortcut = planted_summaries(lambda rf: {5: "chance", 9: "partial"}.get(rf, "perfect"))
  return [Control(f"positive: planted accuracies, GAP at chance below the span ({SPAN} px) and near perfect "
                  "at and above it, FC near perfect throughout", "supported", obeys),
          Control("negative: planted accuracies, GAP near perfect from a 17 px field, below the span (the "
                  "classes told by neighbouring motif pairs, no arrangement-wide field needed)", "refuted",
                  shortcut)]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  return [metric_vs_param(summaries, "receptive_field", "test_accuracy", "head", out_dir / "accuracy_vs_rf.png",
                          reference=(SPAN, "arrangement span"), chance=CHANCE)]


EXPERIMENT = Experiment(
    name="arrangement",
    question="GAP sees only the mean of each class map. Can it separate classes that differ only in the "
             "arrangement of identical motifs, and what does that take?",
    hypothesis="With the receptive field (RF) smaller than the arrangement's span, GAP is near chance; once "
               "the RF covers it, GAP is near perfect. An FC head, which keeps positions, does not need that.",
    metrics={"test_accuracy": "accuracy on 1024 test images (3 classes, chance 1/3)",
             "train_accuracy": "accuracy on 1024 training images"},
    decision_rule=f"Supported if GAP's 95% interval at the largest RF below the span ({SPAN} px) lies under "
                  f"chance + 0.2 and at the smallest RF at or above the span lies over 0.9. Refuted if GAP "
                  "is over 0.9 below the span or under chance + 0.2 above it. Otherwise inconclusive. Planted "
                  "controls (a positive and a negative) must come out supported and refuted first.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls)
