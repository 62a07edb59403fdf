"""Claim 1: training drives the map of every absent class to zero or below everywhere, so a class's mean
is large only when the class is present. Measured on the test split of trained GAP (classify-then-pool)
models, with and without the paper's ReLU on the class maps (with it, 'below zero' becomes 'at zero')."""

import ml_collections
import numpy as np

from experiments.framework import Experiment, Point, Verdict, short_run
from experiments.stats import cohens_d, fmt
from gap_jax.analysis.class_maps import class_maps


def config(dataset: str, final_relu: bool, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("nin_mnist", "gap", dataset, 120 if quick else 300)
  c.final_relu = final_relu
  c.shapes.num_train = 2048 if quick else 4096
  return c


def sweep(quick: bool) -> list[Point]:
  datasets = ("synthetic",) if quick else ("shapes", "synthetic")  # quick: 16x16, 4x cheaper
  return [Point(f"{d}_final-relu-{r}", {"dataset": d, "final_relu": r}, config(d, r, quick))
          for d in datasets for r in (False, True)]


def measure(point, trained) -> dict:
  _, maps_NHWK = class_maps(trained)
  labels = trained.data.test.labels
  n, h, w, k = maps_NHWK.shape
  present_NK = np.arange(k)[None, :] == labels[:, None]
  flat = maps_NHWK.reshape(n, h * w, k).transpose(0, 2, 1)  # (N, K, HW)
  present_maps, absent_maps = flat[present_NK], flat[~present_NK]  # (N, HW), (N*(K-1), HW)
  present_mean_per_image = np.repeat(present_maps.mean(-1), k - 1)  # aligned with absent_maps rows
  out = {
      "absent_at_or_below_zero": float((absent_maps <= 0).mean()),
      "absent_below_present_mean": float((absent_maps < present_mean_per_image[:, None]).mean()),
      "present_mean": float(present_maps.mean()),
      "absent_mean": float(absent_maps.mean()),
      "present_frac_pos": float((present_maps > 0).mean()),
  }
  for c in range(k):  # per class: the absent maps of class c, over images of other classes
    rows = flat[labels != c, c]
    out[f"class{c}_absent_at_or_below_zero"] = float((rows <= 0).mean())
  return out


def decide(summaries: dict) -> Verdict:
  le0 = [p["absent_at_or_below_zero"] for p in summaries.values()]
  below = [p["absent_below_present_mean"] for p in summaries.values()]
  worst_le0 = min(le0, key=lambda s: s["lo"])
  worst_below = min(below, key=lambda s: s["lo"])
  pres = np.concatenate([p["present_mean"]["values"] for p in summaries.values()])
  absn = np.concatenate([p["absent_mean"]["values"] for p in summaries.values()])
  effect = {"worst_share_at_or_below_zero": worst_le0["mean"],
            "worst_share_below_present_mean": worst_below["mean"],
            "cohens_d_present_vs_absent_mean": cohens_d(pres, absn)}
  reason = (f"Across {len(summaries)} settings, the lowest share of absent-class locations at or below zero is "
            f"{fmt(worst_le0, digits=3)}, and below the present "
            f"map's mean {fmt(worst_below, digits=3)}.")
  if worst_le0["lo"] >= 0.9 and worst_below["lo"] >= 0.95:
    return Verdict("supported", reason, effect)
  if worst_le0["hi"] < 0.5:
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  return [metric_vs_param(summaries, "dataset", m, "final_relu", out_dir / f"{m}.png")
          for m in ("absent_at_or_below_zero", "absent_below_present_mean", "absent_mean", "present_mean")]


EXPERIMENT = Experiment(
    name="absent_maps",
    question="Does training make the class map of an absent class near zero (or negative) everywhere?",
    hypothesis="In trained GAP networks, at least 90% of absent-class map locations are at or below zero and "
               "at least 95% lie below the present class's map mean, in every setting.",
    metrics={"absent_at_or_below_zero": "share of absent-class map locations <= 0 (test split)",
             "absent_below_present_mean": "share of absent-class locations below the same image's "
                                          "present-class map mean",
             "present_mean": "mean of present-class maps", "absent_mean": "mean of absent-class maps",
             "test_accuracy": "test accuracy"},
    decision_rule="Supported if, in every setting, the 95% interval of the share at or below zero lies above "
                  "0.9 and of the share below the present mean above 0.95. Refuted if in some setting the "
                  "share at or below zero lies below 0.5. Otherwise inconclusive.",
    sweep=sweep, measure=measure, decide=decide, figures=figures)
