"""Claim 2: a present class's map fires wherever the receptive field (RF) overlaps the object, so as the RF
grows its map spreads with it: as wide as the field allows. RFNet at fixed depth, width and parameter count
turns the RF with mixed dilation rates per layer (no gridding: every pixel of the field reaches the unit;
one rate in every layer would also sample the image more coarsely); GAP head, classify-then-pool, on
`shapes` with equal area per class (so no class is told by its pixel count). RFNet does not pool, so maps are
at image resolution and compared with the masks directly.

Measured on what the loss determines: the margin map, the present class's map minus the mean of the others
(a map added to every class's map cancels). Its width is the sigma of the Gaussian blur of the objects'
masks that it resembles best (R^2 of an affine fit, so neither offset nor scale counts). The null baselines
beside it: the passive-overlap map (each mask correlated with the network's own effective field, Luo et
al.'s input-gradient field: what a unit that only sums the object inside its field would map), measured the
same way, and the same network untrained. The effective field's own width is a fitted Gaussian sigma,
trained and untrained.

A negative control (maps that fire on the object alone at every RF) and a positive one (maps that are the
passive overlap of the masks with the stacked 3x3 kernels) go through `decide` first. The measure that this
replaces (the region above half the map's maximum, compared with the RF-grown mask) came out "refuted" on
maps built exactly to the claim, because a blur's half-max region is the object itself.
"""

import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.convergence import Convergence
from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.measures import (blur_fits, dilate, example_maps_figure, passive_overlap,
                                  present_margin_maps)
from experiments.stats import fmt, paired_difference
from gap_jax.analysis.class_maps import maps_fn_of
from gap_jax.analysis.map_stats import hoyer
from gap_jax.analysis.receptive_field import effective_receptive_field, gaussian_width
from gap_jax.data import shapes
from gap_jax.data.augment import normalize
from gap_jax.models.rfnet import footprint, receptive_field

KERNEL, WIDTH, STEPS = 3, 16, 700
# Rates per layer by receptive field (px); none grids (tests/test_models.py).
SCHEDULES = {9: (1, 1, 1, 1), 13: (1, 2, 2, 1), 21: (1, 2, 3, 4), 27: (1, 2, 4, 6)}
SIGMAS = np.arange(0, 10.01, 0.25)  # candidate blur widths (px)
ERF_IMAGES = 16
RATIO, MIN_GROWTH = 0.5, 0.5  # the rule's thresholds (decision_rule below)
TRAIN_ACCURACY_FLOOR = 0.97  # 700 steps: 0.99 at RF 9 and at RF 27 in the pilot runs


def config(dilations: tuple[int, ...], quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", "gap", "shapes", STEPS, dilations=dilations, width=WIDTH)  # quick cuts points only
  c.final_relu = False  # the margin map is determined with or without it; a ReLU'd map can die
  c.dropout = 0.0
  c.shapes.equal_area = True
  c.shapes.num_train = 4096
  return c


def sweep(quick: bool) -> list[Point]:
  fields = (9, 21) if quick else tuple(SCHEDULES)
  return [Point(f"rf-{rf}", {"head": "gap", "dilations": "-".join(map(str, SCHEDULES[rf])), "receptive_field": rf},
                config(SCHEDULES[rf], quick)) for rf in fields]


def effective_field(trained) -> tuple[np.ndarray, tuple[int, int]]:
  """The centre unit's effective field (present class, first ERF_IMAGES test images) and that unit."""
  data = trained.data
  x = normalize(jnp.asarray(data.test.images[:ERF_IMAGES]), data.mean, data.std)
  h, w = data.image_shape[:2]
  unit = ((h - 1) // 2, (w - 1) // 2)  # stride-1 'same' layers with odd kernels: centred on itself
  erf = effective_receptive_field(maps_fn_of(trained.model), [trained.state.params], x, unit,
                                  data.test.labels[:ERF_IMAGES], centre=unit)
  return erf.erf_HW, unit


def measure(point, trained) -> dict:
  margin, _, gt = present_margin_maps(trained)
  erf_HW, unit = effective_field(trained)
  return measure_maps(margin, gt.masks_NHW, erf_HW, unit, point.params["receptive_field"])


def measure_maps(margin_NHW, masks_NHW, erf_HW, unit, rf: int) -> dict:
  """The claim's quantities for margin maps of images with these object masks, under a network whose
  effective field (of the unit at `unit`) is erf_HW and whose analytic field is rf px."""
  (width, r2), (passive_width, _) = blur_fits([margin_NHW, passive_overlap(masks_NHW, erf_HW, unit)], masks_NHW,
                                              SIGMAS)
  masks = np.asarray(masks_NHW, bool)
  field = dilate(masks, rf)
  fires = np.asarray(margin_NHW) > 0  # above the average absent class: determined
  share = lambda region: float(np.mean([f[r].mean() for f, r in zip(fires, region) if r.any()]))
  return {"map_width": width, "map_fit_r2": r2, "passive_width": passive_width,
          "width_over_passive": width / passive_width if passive_width > 0 else float("nan"),
          "erf_width": gaussian_width(erf_HW, unit),
          "fires_on_object": share(masks), "fires_in_field": share(field & ~masks),
          "fires_outside_field": share(~field),
          "hoyer": float(np.nanmean(hoyer(np.maximum(margin_NHW, 0).reshape(len(margin_NHW), -1))))}


def decide(summaries: dict) -> Verdict:
  points = sorted(summaries.values(), key=lambda p: p["params"]["receptive_field"])
  if len(points) < 2:
    return Verdict("inconclusive", "the sweep needs at least two receptive fields", {})
  small, large = points[0], points[-1]
  # Seed i starts from the same initial weights and batches at every RF (same parameter shapes).
  growth = paired_difference(large["map_width"], small["map_width"])
  ratio = large["width_over_passive"]
  effect = {"map_width_growth_px": growth["mean"], "width_over_passive_at_largest_rf": ratio["mean"],
            "passive_width_growth_px": large["passive_width"]["mean"] - small["passive_width"]["mean"]}
  rf_s, rf_l = small["params"]["receptive_field"], large["params"]["receptive_field"]
  ci = lambda s: fmt(s, digits=2)
  every = ", ".join(f"{p['map_width']['mean']:.2f} (passive {p['passive_width']['mean']:.2f}) at RF "
                    f"{p['params']['receptive_field']}" for p in points)
  reason = (f"The margin map's width (sigma of the mask blur it resembles, px) grew by {ci(growth)} from RF {rf_s} "
            f"to {rf_l} px (every RF: {every}); at RF {rf_l} it is {ci(ratio)} times the passive overlap's "
            f"(fit R^2 {large['map_fit_r2']['mean']:.2f}). Effective field sigma {small['erf_width']['mean']:.2f} "
            f"-> {large['erf_width']['mean']:.2f} px.")
  untrained = "untrained/erf_width"
  if untrained in small:
    reason += (f" Untrained: map width {small['untrained/map_width']['mean']:.2f} -> "
               f"{large['untrained/map_width']['mean']:.2f} px, effective field sigma "
               f"{small[untrained]['mean']:.2f} -> {large[untrained]['mean']:.2f} px.")
  if growth["lo"] > 0 and ratio["lo"] >= RATIO:
    return Verdict("supported", reason, effect)
  if growth["hi"] < MIN_GROWTH or ratio["hi"] < RATIO:
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def planted_maps(rng: np.random.Generator, rf: int, obeys_claim: bool, n: int = 48) -> dict:
  """One planted run's measures at one RF: equal-area `shapes` masks, an effective field that is the stacked
  3x3 kernels of ones of that RF's schedule, and margin maps that are the passive overlap (`obeys_claim`) or
  the mask itself (fires on the object alone), plus noise and a common offset."""
  masks = shapes.generate(n, int(rng.integers(1 << 30)), max_objects=1, equal_area=True)[2]
  line = footprint(KERNEL, SCHEDULES[rf]).astype(np.float64)
  erf_HW = np.zeros(masks.shape[1:])
  unit = ((erf_HW.shape[0] - 1) // 2, (erf_HW.shape[1] - 1) // 2)
  half = (len(line) - 1) // 2  # every schedule's field fits the 32 px image around its centre unit
  erf_HW[unit[0] - half:unit[0] + half + 1, unit[1] - half:unit[1] + half + 1] = np.outer(line, line)
  erf_HW /= erf_HW.sum()
  signal = passive_overlap(masks, erf_HW, unit) if obeys_claim else masks.astype(np.float64)
  signal /= signal.max(axis=(1, 2), keepdims=True)
  margin = 3 * signal - 1 + 0.05 * rng.standard_normal(masks.shape)
  return measure_maps(margin, masks, erf_HW, unit, rf)


def controls() -> list[Control]:
  def summaries(obeys_claim: bool) -> dict:
    points = {}
    for rf in SCHEDULES:
      runs = [planted_maps(np.random.default_rng(seed), rf, obeys_claim) for seed in range(5)]
      points[f"planted_rf-{rf}"] = summarize_point({"head": "planted", "receptive_field": rf}, runs)
    return points
  return [Control("positive: margin maps that are each mask's overlap with the stacked 3x3 kernels (the passive "
                  "overlap) at every RF", "supported", summaries(True)),
          Control("negative: margin maps that fire on the object alone, whatever the RF", "refuted",
                  summaries(False))]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  made = []
  # Widths as one metric in groups, so that one figure holds the trained map, its nulls and the field.
  compared = {"margin map": "map_width", "passive overlap": "passive_width",
              "untrained margin map": "untrained/map_width", "effective field": "erf_width",
              "untrained effective field": "untrained/erf_width"}
  long = {f"{key}_{name}": {"params": {**p["params"], "width_of": name}, "width_px": p[metric]}
          for key, p in summaries.items() for name, metric in compared.items() if metric in p}
  made.append(metric_vs_param(long, "receptive_field", "width_px", "width_of", out_dir / "width_vs_rf.png"))
  fires = {"on object": "fires_on_object", "in field": "fires_in_field", "outside field": "fires_outside_field"}
  long = {f"{key}_{name}": {"params": {**p["params"], "where": name}, "fires": p[metric]}
          for key, p in summaries.items() for name, metric in fires.items()}
  made.append(metric_vs_param(long, "receptive_field", "fires", "where", out_dir / "fires_vs_rf.png"))
  points = sorted(summaries.items(), key=lambda kv: kv[1]["params"]["receptive_field"])
  labels = {key: f"RF {p['params']['receptive_field']}" for key, p in points}
  made.append(example_maps_figure({labels[key]: out_dir / "runs" / key / "seed0" for key, _ in points},
                                  out_dir / "example_maps.png",
                                  grow_by={labels[key]: p["params"]["receptive_field"] for key, p in points}))
  return made


EXPERIMENT = Experiment(
    name="rf_coverage",
    question="Does a present class's map spread as far as the receptive field allows?",
    hypothesis="As the RF grows at fixed depth and parameter count, the present class's margin map widens, "
               f"and at the largest RF it is at least {RATIO} times as wide as the passive overlap of the "
               "object with the network's own effective field.",
    metrics={"test_accuracy": "accuracy on the test split (4 classes of equal area, chance 0.25)",
             "map_width": "sigma (px) of the Gaussian blur of the objects' masks that the margin map (present "
                          "minus mean absent class map) resembles best, test split",
             "map_fit_r2": "R^2 of the margin map against that blurred mask (affine fit)",
             "passive_width": "the same width of the passive-overlap map: each mask correlated with the "
                              f"network's effective field (centre unit, {ERF_IMAGES} test images)",
             "width_over_passive": "map_width / passive_width",
             "erf_width": "sigma (px) of the effective field as a Gaussian (second moment, Luo et al.)",
             "fires_on_object": "share of object pixels where the margin map is above 0",
             "fires_in_field": "share of the band the RF adds around the object where it is above 0",
             "fires_outside_field": "share of pixels beyond the RF-grown object where it is above 0",
             "hoyer": "Hoyer sparsity of relu(margin map) (0 constant, 1 one-hot)"},
    decision_rule=f"With 95% intervals over the seeds (differences between RFs paired by seed, which fixes "
                  f"the initial weights and batches): supported if the growth of map_width from the smallest "
                  f"to the largest RF lies above 0 and width_over_passive at the largest RF lies at or above "
                  f"{RATIO}. Refuted if the growth lies below {MIN_GROWTH} px or width_over_passive below "
                  f"{RATIO}. Otherwise inconclusive. Planted controls come out supported and refuted first; "
                  f"runs below {TRAIN_ACCURACY_FLOOR} train accuracy are left out.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls,
    train_accuracy_floor=TRAIN_ACCURACY_FLOOR, convergence=Convergence())
