"""CAM's claim (Zhou et al. 2016, section 2): global average pooling gives class maps that localize the
object better than global max pooling, because the average is lowered by every weak location (the network
learns to cover the whole object) while the max needs only one discriminative location. Log-sum-exp (r = 10)
lies between them. Measured with Choe et al.'s PxAP and MaxBoxAcc (gap_jax.analysis.localization) on the
present class's margin map (below) of every `shapes` test image, for the same network with each head.

The network is RFNet with plain 3x3 convolutions (depth 4, dilation 1: RF 9 px, smaller than the larger
objects, so a single unit sees a part): it trains in under a minute on 2 CPU cores and makes maps at image
resolution, so nothing is upsampled. One object per image: with two, the box around a map that covers both
matches neither object's box. GMP and LSE learn faster than GAP here (about 0.99 test accuracy after 200
steps; GAP 0.85-0.89 after 250, 0.97 after 300, 1.0 after 500), so the decision waits for every head to
classify well: maps of a model that has not learned the classes say little about the head.

Only what the loss determines is scored. Adding one map to every class's map adds the same number to every
logit and changes no softmax output, so the raw present-class map is not determined: min-max normalisation
removes a constant added to a map, not a spatial field added to every class's map, and such a field moves
both scores. The scored map is therefore the margin map: the present class's map minus the mean of the other
classes' maps (experiments.measures.margin_maps), in which that field cancels; its mean is the logit margin
over the average absent class. Planted controls (maps covering the whole object for GAP and a single peak
on one part for GMP, and the two swapped) go through the same measure and decide before any training.
"""

import functools

import ml_collections
import numpy as np
from scipy import ndimage

from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.measures import example_maps_figure, margin_maps, present_margin_maps
from experiments.stats import fmt, paired_difference
from gap_jax.analysis.ground_truth import inclusive_boxes
from gap_jax.analysis.localization import localization_scores
from gap_jax.data import shapes

HEADS = ("gap", "gmp", "lse")
DILATION, DEPTH, WIDTH = 1, 4, 16
ACCURACY_FLOOR = 0.9  # a head that has not learned the classes is no fair localizer
SCORES = ("pxap", "max_box_acc", "max_box_acc_v2", "cam20_box_acc", "cam20_top1_loc",
          "floor_pxap", "floor_whole_image_box_acc")


def config(head: str, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", head, "shapes", 300 if quick else 500, dilation=DILATION, depth=DEPTH, width=WIDTH)
  c.final_relu = False  # the same unconstrained maps for every head; only the pooling differs
  c.dropout = 0.0
  c.shapes.max_objects = 1
  c.shapes.num_train = 2048 if quick else 4096
  return c


def sweep(quick: bool) -> list[Point]:
  heads = ("gap", "gmp") if quick else HEADS
  return [Point(f"head-{h}", {"model": "rfnet", "head": h}, config(h, quick)) for h in heads]


def measure(point, trained) -> dict:
  maps, correct, gt = present_margin_maps(trained)
  return measure_maps(maps, correct, gt.boxes_N4, gt.masks_NHW)


def measure_maps(maps_NHW: np.ndarray, correct_N: np.ndarray, boxes, masks_NHW: np.ndarray) -> dict:
  """The localization scores (SCORES) of one map per image (N, H, W) against its inclusive boxes (N, 4) or
  (N, M, 4) and masks; `correct_N` says where the class was predicted right (for CAM's top-1 localization)."""
  scores = localization_scores(maps_NHW, boxes, masks_NHW, correct_N=correct_N)
  return {name: float(scores[name]) for name in SCORES}


def decide(summaries: dict) -> Verdict:
  by = {p["params"]["head"]: p for p in summaries.values()}
  if not {"gap", "gmp"} <= set(by):
    return Verdict("inconclusive", "the sweep lacks a gap or a gmp point", {})
  # Seed i starts from the same weights and batches with every head (heads have no parameters here).
  diff = {m: paired_difference(by["gap"][m], by["gmp"][m]) for m in ("pxap", "max_box_acc")}
  floors = by["gap"]
  reason = "; ".join(f"{h}: PxAP {fmt(p['pxap'])}, MaxBoxAcc {fmt(p['max_box_acc'])}, test accuracy "
                     f"{p['test_accuracy']['mean']:.3f}" for h, p in by.items())
  reason += (f". Floors: constant-map PxAP {floors['floor_pxap']['mean']:.1f}, whole-image box "
             f"{floors['floor_whole_image_box_acc']['mean']:.1f}. GAP - GMP: PxAP {fmt(diff['pxap'])}, "
             f"MaxBoxAcc {fmt(diff['max_box_acc'])}.")
  effect = {"pxap_gap_minus_gmp": diff["pxap"]["mean"], "max_box_acc_gap_minus_gmp": diff["max_box_acc"]["mean"]}
  if "lse" in by:
    effect["lse_pxap_between_gap_and_gmp"] = float(
        min(by["gap"]["pxap"]["mean"], by["gmp"]["pxap"]["mean"]) <= by["lse"]["pxap"]["mean"]
        <= max(by["gap"]["pxap"]["mean"], by["gmp"]["pxap"]["mean"]))
  weakest = min(by, key=lambda h: by[h]["test_accuracy"]["mean"])
  if by[weakest]["test_accuracy"]["mean"] < ACCURACY_FLOOR:
    return Verdict("inconclusive", f"{weakest} reached only {by[weakest]['test_accuracy']['mean']:.3f} test "
                   f"accuracy (< {ACCURACY_FLOOR}). " + reason, effect)
  above = [d["lo"] > 0 for d in diff.values()]
  below = [d["hi"] < 0 for d in diff.values()]
  if all(above):
    return Verdict("supported", reason, effect)
  if any(below) and not any(above):
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def planted_maps(seed: int, covers: bool, n: int = 64, image_size: int = 32, noise: float = 0.1,
                 field: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(class maps (N, S, S, K), labels (N,), inclusive boxes (N, 1, 4), masks (N, S, S)) for `shapes` images
  with one object. The present class's map `covers` the whole object (its mask blurred by 1 px) or fires
  only at one small part (a 1 px Gaussian peak at a random pixel of the object, as GMP needs); every class's
  map gets independent noise and one common smooth field, `field` times the signal's height, which the
  loss ignores and the margin map must cancel."""
  _, labels, masks, boxes = shapes.generate(n, seed, image_size=image_size, max_objects=1)
  rng = np.random.default_rng(seed)
  if covers:
    signal = ndimage.gaussian_filter(masks.astype(np.float64), (0, 1, 1))
  else:
    peaks = np.zeros(masks.shape)
    for i, mask in enumerate(masks):
      ys, xs = np.nonzero(mask)
      j = rng.integers(len(ys))
      peaks[i, ys[j], xs[j]] = 1.0
    signal = ndimage.gaussian_filter(peaks, (0, 1, 1))
  signal /= signal.max(axis=(1, 2), keepdims=True)
  common = ndimage.gaussian_filter(rng.standard_normal(masks.shape), (0, 6, 6))
  common *= field / common.std(axis=(1, 2), keepdims=True)
  k = len(shapes.CLASS_NAMES)
  present = np.arange(k) == labels[:, None, None, None]
  maps = common[..., None] + noise * rng.standard_normal((*masks.shape, k)) + present * signal[..., None]
  return maps, labels, inclusive_boxes(boxes), masks


@functools.cache
def planted_run(seed: int, covers: bool) -> dict:
  """One planted seed measured as measure measures a run (the margin map); cached, since both controls
  score the same maps (about half a second each at 32 x 32)."""
  maps, labels, boxes, masks = planted_maps(seed, covers)
  correct = np.random.default_rng(seed).random(len(labels)) < 0.97  # a few wrong, above ACCURACY_FLOOR
  return {"test_accuracy": float(correct.mean()), **measure_maps(margin_maps(maps, labels), correct, boxes, masks)}


def controls() -> list[Control]:
  def summaries(gap_covers: bool) -> dict:
    # seed i plants the same images for both heads: the pairing decide relies on
    return {f"planted_head-{head}": summarize_point({"model": "planted", "head": head},
                                                    [planted_run(seed, covers) for seed in range(5)])
            for head, covers in (("gap", gap_covers), ("gmp", not gap_covers))}
  return [Control("positive: planted GAP maps cover the whole object, GMP maps fire at one small part (a common "
                  "field added to every class's map)", "supported", summaries(True)),
          Control("negative: the same maps swapped, GAP's at one part and GMP's covering the object",
                  "refuted", summaries(False))]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  floors = {"pxap": "floor_pxap", "max_box_acc": "floor_whole_image_box_acc"}
  made = []
  for metric, floor in floors.items():
    # plots draws the floor (a map that knows nothing) as its "chance" line.
    level = float(np.mean([p[floor]["mean"] for p in summaries.values()]))
    made.append(metric_vs_param(summaries, "head", metric, "model", out_dir / f"{metric}_by_head.png", chance=level))
  runs = {p["params"]["head"]: out_dir / "runs" / key / "seed0" for key, p in summaries.items()}
  made.append(example_maps_figure(runs, out_dir / "example_maps.png"))
  return made


EXPERIMENT = Experiment(
    name="gap_vs_gmp_localization",
    question="Do GAP class maps localize objects better than GMP class maps (CAM, Zhou et al. 2016), with "
             "LSE in between?",
    hypothesis="On the same network, the present class's GAP maps score higher PxAP and MaxBoxAcc than its "
               "GMP maps; LSE (r = 10) scores between them.",
    metrics={"test_accuracy": "accuracy on the test split (4 classes, chance 0.25)",
             "pxap": "PxAP (%) of the min-max normalised margin maps (the present class's map minus the mean "
                     "of the other classes' maps, which the loss determines) against the object masks",
             "max_box_acc": "MaxBoxAcc (%) of the margin maps: best share over thresholds of images whose "
                            "largest component's box has IoU >= 0.5 with the object's box",
             "max_box_acc_v2": "MaxBoxAccV2 (%): IoU 0.3, 0.5, 0.7, best component's box",
             "cam20_box_acc": "CAM's box (largest component of the margin map above 20% of its max) with IoU "
                              ">= 0.5 (%)",
             "cam20_top1_loc": "CAM's top-1 localization (%): right class and CAM box IoU >= 0.5",
             "floor_pxap": "PxAP of a constant map (%): the foreground share",
             "floor_whole_image_box_acc": "BoxAcc of the whole-image box (%)"},
    decision_rule=f"Only if every head's mean test accuracy is at least {ACCURACY_FLOOR} (else inconclusive): "
                  "with 95% t intervals over 3 seeds of GAP - GMP (paired by seed, which fixes the initial "
                  "weights and batches), supported if both the PxAP and the MaxBoxAcc difference lie above "
                  "0; refuted if neither lies above 0 and at least one lies below 0; otherwise inconclusive. "
                  "LSE's place between them is reported, not tested. All scores are of margin maps. Planted "
                  "controls (a positive and a negative) must come out supported and refuted first.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls)
