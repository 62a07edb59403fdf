"""Claim 2: a class-map unit responds wherever its receptive field (RF) overlaps the object, so the active
region of a present class's map should be the object's mask grown by the RF, and wider fields should give
less sparse maps. RFNet varies the RF by dilation at fixed depth, width and parameter count (the same
initial weights per seed at every dilation), GAP head, classify-then-pool, on `shapes` (objects with pixel
masks). RFNet does not pool, so its maps are at image resolution and compared with the masks directly.

The active region is map > 0.5 * max. Without the final ReLU the sign of a map means nothing (softmax
ignores a field added to every class's map), and in pilot runs map > 0 covered about two thirds of every
image whatever the RF. The IoU comparison depends on this threshold: a larger region tends to overlap the
larger grown mask better, so `best_fit_side` (the grown mask the region matches best) is reported beside it.
Test accuracy is about 0.8 after the quick setting's 200 steps, 0.88 (dilation 4) to 0.98 (dilation 1) after
300-400; the full sweep trains 600.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy import stats as scipy_stats

from experiments.framework import Experiment, Point, Verdict, short_run
from experiments.measures import (active_region, best_fit_side, dilate, example_maps_figure,
                                  present_class_maps, region_iou)
from experiments.stats import fmt, paired_difference
from gap_jax.analysis.class_maps import maps_fn_of
from gap_jax.analysis.map_stats import hoyer
from gap_jax.analysis.receptive_field import effective_receptive_field
from gap_jax.data.augment import normalize
from gap_jax.models.rfnet import receptive_field

DEPTH, KERNEL, WIDTH = 4, 3, 16
TAU = 0.5  # active: map > TAU * max
ERF_IMAGES, ERF_MASS = 16, 0.95


def config(dilation: int, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", "gap", "shapes", 200 if quick else 400, dilation=dilation, depth=DEPTH, width=WIDTH)
  c.final_relu = False  # unconstrained maps; a ReLU'd map can die in a short run
  c.dropout = 0.0
  c.shapes.num_train = 2048 if quick else 4096
  return c


def sweep(quick: bool) -> list[Point]:
  dilations = (1, 4) if quick else (1, 2, 3, 4)
  return [Point(f"dilation-{d}", {"head": "gap", "dilation": d,
                                  "receptive_field": receptive_field(DEPTH, KERNEL, d)}, config(d, quick))
          for d in dilations]


def erf_size(trained) -> int | None:
  """Side of the square, centred on the centre unit, holding ERF_MASS of its present-class input gradient
  on the first ERF_IMAGES test images."""
  data = trained.data
  x = normalize(jnp.asarray(data.test.images[:ERF_IMAGES]), data.mean, data.std)
  h, w = data.image_shape[:2]
  unit = ((h - 1) // 2, (w - 1) // 2)  # stride-1 'SAME' layers with odd kernels: centred on itself
  return effective_receptive_field(maps_fn_of(trained.model), [trained.state.params], x, unit,
                                   data.test.labels[:ERF_IMAGES], mass=ERF_MASS, centre=unit).size


def measure(point, trained) -> dict:
  maps, _, gt = present_class_maps(trained)
  active = active_region(maps, TAU)
  iou_mask = region_iou(active, gt.masks_NHW).mean()
  iou_rf = region_iou(active, dilate(gt.masks_NHW, point.params["receptive_field"])).mean()
  erf = erf_size(trained)
  return {"active_fraction": float(active.mean()),
          "hoyer": float(np.nanmean(hoyer(maps.reshape(len(maps), -1)))),
          "erf_size": float("nan") if erf is None else float(erf),
          "iou_mask": float(iou_mask), "iou_rf_dilated_mask": float(iou_rf),
          "rf_dilated_minus_mask_iou": float(iou_rf - iou_mask),
          "iou_erf_dilated_mask": float("nan") if erf is None else
          float(region_iou(active, dilate(gt.masks_NHW, erf)).mean()),
          "best_fit_side": float(best_fit_side(active, gt.masks_NHW))}


def decide(summaries: dict) -> Verdict:
  points = sorted(summaries.values(), key=lambda p: p["params"]["receptive_field"])
  if len(points) < 2:
    return Verdict("inconclusive", "the sweep needs at least two receptive fields", {})
  small, large = points[0], points[-1]
  # Seed i starts from the same weights and batches at every dilation, so differences pair by seed.
  hoyer_drop = paired_difference(small["hoyer"], large["hoyer"])
  advantage = large["rf_dilated_minus_mask_iou"]
  growth = paired_difference(large["rf_dilated_minus_mask_iou"], small["rf_dilated_minus_mask_iou"])
  rfs = [p["params"]["receptive_field"] for p in points for _ in p["hoyer"]["values"]]
  rho = scipy_stats.spearmanr(rfs, [v for p in points for v in p["hoyer"]["values"]]).statistic
  effect = {"hoyer_smallest_minus_largest_rf": hoyer_drop["mean"],
            "iou_rf_dilated_minus_mask_at_largest_rf": advantage["mean"],
            "iou_advantage_largest_minus_smallest_rf": growth["mean"], "spearman_hoyer_vs_rf": float(rho)}
  rf_s, rf_l = small["params"]["receptive_field"], large["params"]["receptive_field"]
  ci = lambda s: fmt(s, digits=3)
  reason = (f"At RF {rf_l} px, IoU of the active region with the RF-dilated mask minus with the mask: "
            f"{ci(advantage)} (at RF {rf_s} px: {ci(small['rf_dilated_minus_mask_iou'])}); the region "
            f"matches best a mask grown by {ci(small['best_fit_side'])} px at RF {rf_s} and "
            f"{ci(large['best_fit_side'])} px at RF {rf_l}. Hoyer sparsity at RF {rf_s} minus at RF {rf_l}: "
            f"{ci(hoyer_drop)} (Spearman rho of Hoyer with RF over all runs {rho:.2f}); active share "
            f"{ci(small['active_fraction'])} -> {ci(large['active_fraction'])}; test accuracy "
            f"{ci(small['test_accuracy'])} -> {ci(large['test_accuracy'])}.")
  if advantage["lo"] > 0 and hoyer_drop["lo"] > 0:
    return Verdict("supported", reason, effect)
  if advantage["hi"] < 0 or hoyer_drop["hi"] < 0:
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  made = [metric_vs_param(summaries, "receptive_field", m, "head", out_dir / f"{m}_vs_rf.png")
          for m in ("hoyer", "active_fraction", "erf_size", "best_fit_side")]
  # The IoUs as one metric in three groups, so one figure holds all three lines.
  compared = {"mask": "iou_mask", "rf_dilated_mask": "iou_rf_dilated_mask",
              "erf_dilated_mask": "iou_erf_dilated_mask"}
  long = {f"{key}_{name}": {"params": {**p["params"], "active_vs": name}, "iou": p[metric]}
          for key, p in summaries.items() for name, metric in compared.items()}
  made.append(metric_vs_param(long, "receptive_field", "iou", "active_vs", out_dir / "iou_vs_rf.png"))
  points = sorted(summaries.items(), key=lambda kv: kv[1]["params"]["receptive_field"])
  labels = {key: f"RF {p['params']['receptive_field']}" for key, p in points}
  made.append(example_maps_figure({labels[key]: out_dir / "runs" / key / "seed0" for key, _ in points},
                                  out_dir / "example_maps.png", tau=TAU,
                                  grow_by={labels[key]: p["params"]["receptive_field"] for key, p in points}))
  return made


EXPERIMENT = Experiment(
    name="rf_coverage",
    question="Does the active region of a present class's map track the receptive field?",
    hypothesis="As the RF grows at fixed depth and parameter count, the active region (map > 0.5 * max) "
               "follows the object's mask grown by the RF more than the mask itself (IoU with the grown "
               "mask above IoU with the mask at the largest RF), and the maps get less sparse (Hoyer "
               "sparsity lower at the largest RF than at the smallest).",
    metrics={"test_accuracy": "accuracy on the test split (4 classes, chance 0.25)",
             "active_fraction": f"share of map locations above {TAU} * the map's max (present class)",
             "hoyer": "Hoyer sparsity of relu(map) (present class; 0 constant, 1 one-hot)",
             "erf_size": f"side (px) of the square holding {ERF_MASS:.0%} of the centre unit's input-gradient "
                         f"mass (Luo et al.), {ERF_IMAGES} test images",
             "iou_mask": "IoU of the active region with the objects' mask, mean over test images",
             "iou_rf_dilated_mask": "IoU of the active region with the mask grown by an RF x RF square",
             "rf_dilated_minus_mask_iou": "iou_rf_dilated_mask - iou_mask",
             "iou_erf_dilated_mask": "IoU of the active region with the mask grown by an ERF x ERF square",
             "best_fit_side": "side of the square whose grown mask the active region matches best (mean IoU)"},
    decision_rule="With 95% t intervals over 3 seeds (differences between RFs paired by seed, which fixes the "
                  "initial weights and batches): supported if at the largest RF the interval of "
                  "iou_rf_dilated_mask - iou_mask lies above 0 and that of Hoyer(smallest RF) - "
                  "Hoyer(largest RF) lies above 0. Refuted if either interval lies below 0. Otherwise "
                  "inconclusive.",
    sweep=sweep, measure=measure, decide=decide, figures=figures)
