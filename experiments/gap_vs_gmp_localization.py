"""CAM's claim (Zhou et al. 2016, section 2): global average pooling gives class maps that localize the
object better than global max pooling, because the average is lowered by every weak location (the network
learns to cover the whole object) while the max needs only one discriminative location. Log-sum-exp (r = 10)
lies between them (full sweep only).

Scored by Choe et al.'s fixed protocol (CVPR 2020; gap_jax.analysis.localization.fixed_protocol_scores): the
map threshold of each IoU (0.3, 0.5, 0.7) is chosen where BoxAcc is best on a held-out split with boxes
("train-fullsup": a separate draw of the `shapes` generator, HELDOUT_IMAGES images, never trained or tested
on), and the test split is scored at those thresholds: MaxBoxAccV2. PxAP has no threshold and is taken on the
test split. CAM's 20%-of-max box is not scored: its fraction is a hyper-parameter the protocol would have to
choose on the held-out split too, and MaxBoxAcc already covers a box threshold.

Both placements of the head (gap_jax/models/output.py): NiN's classify_then_pool, where the head pools one
map per class, and CAM's pool_then_classify, where the head pools the features and the scored map is the
class activation map sum_k W[k, c] f_k + b_c. The network is RFNet (3x3 convolutions at image resolution, so
nothing is upsampled), and its receptive field is swept against the objects' size (sides of 7-14 px, mean
OBJECT_SIDE): 5 px (depth 2) and 9 px (depth 4), smaller than most objects, so a unit sees a part, and 21 px
(rates 1, 2, 3, 4: no gridding), larger than every object. One object per image: with two, the box around a
map that covers both matches neither object's box. Maps of a head that has not learned the classes say
little about it, so a (placement, field) counts only where both heads reach ACCURACY_FLOOR.

Only what the loss determines is scored. Adding one map to every class's map adds the same number to every
logit and changes no softmax output, so the raw present-class map is not determined: min-max normalisation
removes a constant added to a map, not a spatial field added to every class's map, and such a field moves
both scores. The scored map is therefore the margin map: the present class's map minus the mean of the other
classes' maps (experiments.measures.margin_maps), in which that field cancels; its mean is the logit margin
over the average absent class. The held-out split's margin maps use its true labels. Planted controls (maps
covering the whole object for GAP and a single peak on one part for GMP, and the two swapped) go through the
same measure, held-out split included, and decide before any training.
"""

import functools
import inspect

import ml_collections
import numpy as np
from scipy import ndimage

from experiments.convergence import Convergence
from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.measures import example_maps_figure, margin_maps, present_margin_maps
from experiments.stats import fmt, paired_difference
from gap_jax.analysis.class_maps import class_maps
from gap_jax.analysis.ground_truth import PROCEDURAL, inclusive_boxes
from gap_jax.analysis.localization import IOU_THRESHOLDS_V2, fixed_protocol_scores
from gap_jax.data import shapes
from gap_jax.models.output import PLACEMENTS
from gap_jax.models.rfnet import receptive_field

HEADS, QUICK_HEADS = ("gap", "gmp", "lse"), ("gap", "gmp")
KERNEL, WIDTH = 3, 16
# RFNet layouts, by receptive field: undilated stacks, and mixed rates that reach every pixel of the field.
LAYOUTS = ({"depth": 2}, {"depth": 4}, {"depth": 4, "dilations": (1, 2, 3, 4)})
QUICK_LAYOUTS = ({"depth": 4},)
_drawn = inspect.signature(shapes.generate).parameters
OBJECT_SIDE = (_drawn["min_size"].default + _drawn["max_size"].default) / 2  # mean drawn side (px)
# 2.5x the shared recipe's rate: GAP then fits in 300 steps (600 at 2e-3); the depth-2 field needs 1000.
LEARNING_RATE, QUICK_STEPS, FULL_STEPS = 5e-3, 300, 1000
ACCURACY_FLOOR = 0.9  # a head that has not learned the classes is no fair localizer
DECIDING = ("max_box_acc_v2", "pxap")
FULL_RUN_SEEDS = 10  # the intervals of a full run (--seeds 10) are bootstrap ones (experiments.stats)
HELDOUT_IMAGES = 256
# Runs train on seed s and test on s + 1 with small s: an offset this far keeps the held-out draw apart from
# every run's data.
HELDOUT_SEED_OFFSET = 100_000
SCORES = ("max_box_acc_v2", "pxap", "max_box_acc", "test_chosen_max_box_acc_v2", "floor_pxap",
          "floor_whole_image_box_acc_v2")


def field_of(layout: dict) -> int:
  return receptive_field(kernel=KERNEL, **layout)


def config(head: str, placement: str, layout: dict, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", head, "shapes", QUICK_STEPS if quick else FULL_STEPS, width=WIDTH, kernel=KERNEL,
                **layout)
  c.learning_rate = LEARNING_RATE
  c.head_placement = placement
  c.final_relu = False  # the same unconstrained maps for every head; only the pooling differs
  c.dropout = 0.0
  c.shapes.max_objects = 1
  c.shapes.num_train = 2048 if quick else 4096
  c.shapes.num_test = 512 if quick else 1024
  return c


def sweep(quick: bool) -> list[Point]:
  points = []
  for placement in PLACEMENTS:
    for layout in QUICK_LAYOUTS if quick else LAYOUTS:
      rf = field_of(layout)
      for h in QUICK_HEADS if quick else HEADS:
        params = {"model": "rfnet", "head": h, "placement": placement, "field": rf,
                  "field_to_object": round(rf / OBJECT_SIDE, 2)}
        points.append(Point(f"{placement}_field-{rf}_head-{h}", params, config(h, placement, layout, quick)))
  return points


def heldout_split(shapes_config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(images, labels, inclusive boxes, masks) of the held-out split: the run's generator and arguments (as
  ground_truth regenerates the test split) at a seed no run trains or tests on."""
  module, fields = PROCEDURAL["shapes"]
  c = shapes_config
  images, labels, masks, boxes = module.generate(HELDOUT_IMAGES, c.seed + HELDOUT_SEED_OFFSET,
                                                 **{f: c[f] for f in fields})
  return images, labels, inclusive_boxes(boxes), masks


def measure(point, trained) -> dict:
  test_maps, _, gt = present_margin_maps(trained)
  images, labels, boxes, _ = heldout_split(trained.config.shapes)
  _, heldout_maps = class_maps(trained, images, upsampled=True)
  return measure_maps(margin_maps(heldout_maps, labels), boxes, test_maps, gt.boxes_N4, gt.masks_NHW)


def measure_maps(heldout_NHW: np.ndarray, heldout_boxes, test_NHW: np.ndarray, test_boxes,
                 test_masks_NHW: np.ndarray) -> dict:
  """The scores (SCORES) of one map per image, thresholds chosen on the held-out maps and their boxes, and
  the chosen threshold per IoU."""
  scores = fixed_protocol_scores(heldout_NHW, heldout_boxes, test_NHW, test_boxes, test_masks_NHW)
  chosen = scores["max_box_acc_v2_threshold_by_iou"]
  return {**{name: float(scores[name]) for name in SCORES},
          **{f"heldout_threshold_iou_{d}": chosen[str(d)] for d in IOU_THRESHOLDS_V2}}


def cells(summaries: dict) -> dict:
  """(placement, field) -> head -> summary."""
  out = {}
  for p in summaries.values():
    out.setdefault((p["params"]["placement"], p["params"]["field"]), {})[p["params"]["head"]] = p
  return dict(sorted(out.items()))


def judge_cell(by: dict) -> tuple[str | None, str, dict]:
  """One (placement, field): (its verdict, or None where a head is missing or does not classify; the
  numbers in words; the paired GAP - GMP differences)."""
  if not {"gap", "gmp"} <= set(by):
    return None, "lacks a gap or a gmp point, left out", {}
  accuracy = {h: by[h]["test_accuracy"]["mean"] for h in ("gap", "gmp")}
  if min(accuracy.values()) < ACCURACY_FLOOR:
    return None, (f"test accuracy GAP {accuracy['gap']:.3f}, GMP {accuracy['gmp']:.3f}: below "
                  f"{ACCURACY_FLOOR}, left out"), {}
  # Seed i starts from the same weights and batches with either head (gap and gmp have no parameters).
  diff = {m: paired_difference(by["gap"][m], by["gmp"][m]) for m in DECIDING}
  if all(d["lo"] > 0 for d in diff.values()):
    verdict = "supported"
  elif any(d["hi"] < 0 for d in diff.values()) and not any(d["lo"] > 0 for d in diff.values()):
    verdict = "refuted"
  else:
    verdict = "inconclusive"
  untrained = lambda h: (f", untrained {by[h]['untrained/max_box_acc_v2']['mean']:.1f}"
                         if "untrained/max_box_acc_v2" in by[h] else "")
  heads = "; ".join(f"{h.upper()} MaxBoxAccV2 {fmt(p['max_box_acc_v2'])}{untrained(h)}, PxAP {fmt(p['pxap'])}, "
                    f"test accuracy {p['test_accuracy']['mean']:.3f}" for h, p in by.items())
  return verdict, (f"{heads}; GAP - GMP: MaxBoxAccV2 {fmt(diff['max_box_acc_v2'])}, PxAP {fmt(diff['pxap'])} "
                   f"-> {verdict}"), diff


def decide(summaries: dict) -> Verdict:
  judged, lines, effect = {}, [], {}
  for (placement, rf), by in cells(summaries).items():
    verdict, why, diff = judge_cell(by)
    lines.append(f"{placement}, field {rf} px ({rf / OBJECT_SIDE:.2f} x the object's side): {why}.")
    name = f"{placement}_field{rf}"
    if verdict is None:
      continue
    judged[(placement, rf)] = verdict
    effect.update({f"{name}_{m}_gap_minus_gmp": d["mean"] for m, d in diff.items()})
    if "lse" in by:
      means = [by[h]["max_box_acc_v2"]["mean"] for h in ("gap", "gmp", "lse")]
      effect[f"{name}_lse_max_box_acc_v2_between_gap_and_gmp"] = float(min(means[:2]) <= means[2] <= max(means[:2]))
  some = next(iter(summaries.values()))
  reason = " ".join(lines) + (f" Floors: constant-map PxAP {some['floor_pxap']['mean']:.1f}, whole-image box "
                              f"MaxBoxAccV2 {some['floor_whole_image_box_acc_v2']['mean']:.1f}.")
  unjudged = sorted({p for p, _ in cells(summaries)} - {p for p, _ in judged})
  if "refuted" in judged.values():
    return Verdict("refuted", reason, effect)
  if unjudged:
    return Verdict("inconclusive", f"No field where both heads classify in {', '.join(unjudged)}. " + reason,
                   effect)
  if all(v == "supported" for v in judged.values()):
    return Verdict("supported", reason, effect)
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
  """One planted seed measured as measure measures a run (margin maps, thresholds chosen on a held-out draw
  of planted maps); cached, since both controls score the same maps (about a second each at 32 x 32)."""
  maps, labels, boxes, masks = planted_maps(seed, covers)
  h_maps, h_labels, h_boxes, _ = planted_maps(seed + HELDOUT_SEED_OFFSET, covers)
  correct = np.random.default_rng(seed).random(len(labels)) < 0.97  # a few wrong, above ACCURACY_FLOOR
  return {"test_accuracy": float(correct.mean()),
          **measure_maps(margin_maps(h_maps, h_labels), h_boxes, margin_maps(maps, labels), boxes, masks)}


def planted_summaries(gap_covers: bool, seeds: int = 5) -> dict:
  """decide's input for planted maps in both placements at the quick field; seed i plants the same images
  for both heads (the pairing decide relies on)."""
  rf = field_of(QUICK_LAYOUTS[0])
  return {f"planted_{placement}_head-{head}": summarize_point(
              {"model": "planted", "head": head, "placement": placement, "field": rf},
              [planted_run(seed, covers) for seed in range(seeds)])
          for placement in PLACEMENTS for head, covers in (("gap", gap_covers), ("gmp", not gap_covers))}


def controls() -> list[Control]:
  return [Control("positive: planted GAP maps cover the whole object, GMP maps fire at one small part (a common "
                  "field added to every class's map), in both placements", "supported", planted_summaries(True)),
          Control("negative: the same maps swapped, GAP's at one part and GMP's covering the object",
                  "refuted", planted_summaries(False))]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  floors = {"max_box_acc_v2": "floor_whole_image_box_acc_v2", "pxap": "floor_pxap"}
  made = []
  for placement in PLACEMENTS:
    mine = {k: p for k, p in summaries.items() if p["params"]["placement"] == placement}
    for metric, floor in floors.items() if mine else ():
      # plots draws the floor (a map that knows nothing) as its "chance" line.
      level = float(np.mean([p[floor]["mean"] for p in mine.values()]))
      made.append(metric_vs_param(mine, "field_to_object", metric, "head",
                                  out_dir / f"{metric}_{placement}_by_field.png", chance=level))
  quick_field = field_of(QUICK_LAYOUTS[0])
  runs = {f"{p['params']['placement']} {p['params']['head']}": out_dir / "runs" / key / "seed0"
          for key, p in summaries.items() if p["params"]["field"] == quick_field}
  if runs:
    made.append(example_maps_figure(runs, out_dir / "example_maps.png"))
  return made


EXPERIMENT = Experiment(
    name="gap_vs_gmp_localization",
    question="Do GAP class maps localize objects better than GMP class maps (CAM, Zhou et al. 2016), in either "
             "placement of the head and at fields smaller and larger than the object?",
    hypothesis="On the same network, the present class's GAP maps score higher MaxBoxAccV2 and PxAP than its "
               "GMP maps under Choe et al.'s fixed protocol, with the head before the classifier (CAM) as well "
               "as after the class maps (NiN), wherever both heads classify; LSE (r = 10) scores between them.",
    metrics={"test_accuracy": "accuracy on the test split (4 classes, chance 0.25)",
             "max_box_acc_v2": "MaxBoxAccV2 (%) of the min-max normalised margin maps (the present class's map "
                               "minus the mean of the other classes' maps, which the loss determines): mean over "
                               "IoU 0.3, 0.5, 0.7 of the test split's BoxAcc (best component's box) at the map "
                               "threshold chosen for that IoU on the held-out split",
             "pxap": "PxAP (%) of the test split's margin maps against the object masks (no threshold)",
             "max_box_acc": "MaxBoxAcc (%): IoU 0.5, largest component's box, threshold chosen on the held-out "
                            "split",
             "test_chosen_max_box_acc_v2": "MaxBoxAccV2 (%) with the thresholds chosen on the test split itself "
                                           "(what the protocol forbids; reported to show the optimism)",
             "heldout_threshold_iou_0.5": "the map threshold the held-out split chose for IoU 0.5 (likewise "
                                          "0.3, 0.7)",
             "floor_pxap": "PxAP of a constant map (%): the foreground share",
             "floor_whole_image_box_acc_v2": "MaxBoxAccV2 of the whole-image box (%)"},
    decision_rule=f"Thresholds chosen on a held-out split of {HELDOUT_IMAGES} images with boxes, never on the "
                  "test split. Per placement and receptive field, only where both GAP's and GMP's mean test "
                  f"accuracy reach {ACCURACY_FLOOR}, with 95% intervals over the seeds of GAP - GMP (paired by "
                  "seed, which fixes the initial weights and batches; a full run has "
                  f"{FULL_RUN_SEEDS} seeds): supported there if both the MaxBoxAccV2 and the PxAP difference lie "
                  "above 0; refuted there if either lies below 0 (GMP's interval above GAP's) and neither "
                  "above; otherwise inconclusive. The claim is refuted if any such field is refuted; "
                  "supported if every such field is supported and each placement has one; otherwise "
                  "inconclusive. LSE's place between them is reported, not tested. Planted controls (a "
                  "positive and a negative) must come out supported and refuted first.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls,
    convergence=Convergence())
