"""Claim 1: training drives the map of every absent class below the present class's map everywhere, so a
class's mean is large only when the class is present. Measured on the test split of trained GAP
(classify-then-pool) models, with and without the paper's ReLU on the class maps.

Only what the loss determines is measured. Without the final ReLU, adding one map to every class's map adds
the same number to every logit and leaves the softmax unchanged, so the sign of a map means nothing; the
difference between the present class's map and an absent one's does (its mean is the logit margin). So the
claim is tested on `absent_below_present`, the share of (image, absent class, location) where the present
map is above the absent one, and on maps centred across classes. Only with the final ReLU is zero a real
value, and there `absent_at_zero` counts absent locations that are exactly zero.

Behind the final ReLU a class map can die in training (zero everywhere on every image: no gradient reaches
it again). Such a network has not learned the claim's maps, so a setting whose runs keep a dead class map is
reported as dead and not scored; Adam at lr 5e-4 with 100 warm-up steps lets most runs keep every map alive
(at 2e-3 with 30, 6 and 7 of 10 runs died on shapes and synthetic).
"""

import ml_collections
import numpy as np

from experiments.convergence import Convergence
from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.stats import fmt
from gap_jax.analysis.class_maps import class_maps

SUPPORT, REFUTE, ABOVE_NULL = 0.95, 0.8, 0.2  # the rule's thresholds (decision_rule below)
TRAIN_ACCURACY_FLOOR = 0.99  # the claim is about networks that fit their data (300 steps reach 1.0 on both)


def config(dataset: str, final_relu: bool, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("nin_mnist", "gap", dataset, 300)  # quick cuts points, not steps: its runs converge too
  c.learning_rate, c.warmup_steps = 5e-4, 100  # gentler than short_run's: fewer dead class maps (docstring)
  c.final_relu = final_relu
  c.shapes.num_train = 2048 if quick else 4096
  return c


def sweep(quick: bool) -> list[Point]:
  datasets = ("synthetic",) if quick else ("shapes", "synthetic")  # quick: 16x16, 4x cheaper
  return [Point(f"{d}_final-relu-{r}", {"dataset": d, "final_relu": r}, config(d, r, quick))
          for d in datasets for r in (False, True)]


def measure(point, trained) -> dict:
  _, maps_NHWK = class_maps(trained)
  return measure_maps(maps_NHWK, trained.data.test.labels, final_relu=trained.config.final_relu)


def measure_maps(maps_NHWK: np.ndarray, labels: np.ndarray, final_relu: bool) -> dict:
  """The claim's quantities for class maps (N, H, W, K) of images of class `labels`."""
  n, h, w, k = maps_NHWK.shape
  flat = maps_NHWK.reshape(n, h * w, k).transpose(0, 2, 1)  # (N, K, HW)
  present_NK = np.arange(k)[None, :] == labels[:, None]
  present = flat[present_NK]  # (N, HW)
  absent = flat[~present_NK].reshape(n, k - 1, h * w)
  margin = present[:, None, :] - absent  # determined: a map added to every class cancels
  below = margin > 0
  if final_relu:  # behind the ReLU, an absent map at zero is where the claim puts it, present map zero or not
    below |= absent <= 0
  centred = flat - flat.mean(1, keepdims=True)  # determined likewise
  out = {"absent_below_present": float(below.mean()),
         "worst_image_below_present": float(below.mean((1, 2)).min()),
         "logit_margin": float(margin.mean()),
         "absent_centred_below_zero": float((centred[~present_NK] < 0).mean())}
  if final_relu:  # behind a ReLU zero is a value the loss can see: absent maps exactly at it
    out["absent_at_zero"] = float((absent <= 0).mean())
    out["dead_class_maps"] = float((flat <= 0).all(axis=(0, 2)).mean())  # classes zero on every image
  return out


def decide(summaries: dict) -> Verdict:
  dead = [key for key, p in summaries.items() if "dead_class_maps" in p and p["dead_class_maps"]["mean"] > 0]
  summaries = {key: p for key, p in summaries.items() if key not in dead}
  if not summaries:
    return Verdict("inconclusive", f"Every setting kept a dead class map ({', '.join(dead)}): nothing to score.", {})
  dead_note = (f" Not scored: {', '.join(dead)}, whose runs kept a class map that is zero on every test image "
               "(dead behind the final ReLU)." if dead else "")
  below = {key: p["absent_below_present"] for key, p in summaries.items()}
  null = {key: p["untrained/absent_below_present"]["mean"] for key, p in summaries.items()}
  worst = min(below, key=lambda key: below[key]["lo"])
  above_null = min(below[key]["lo"] - null[key] for key in below)
  effect = {"worst_share_below_present": below[worst]["mean"], "least_gain_over_untrained": above_null,
            "least_logit_margin": min(p["logit_margin"]["mean"] for p in summaries.values())}
  reason = (f"Across {len(summaries)} settings the lowest share of absent-class locations below the present "
            f"class's map is {fmt(below[worst], digits=3)} ({worst}); the untrained networks give "
            f"{min(null.values()):.3f}-{max(null.values()):.3f}, and the smallest gain of a lower bound over "
            f"its untrained network is {above_null:+.3f}.{dead_note}")
  if all(b["lo"] > SUPPORT for b in below.values()) and above_null >= ABOVE_NULL:
    return Verdict("supported", reason, effect)
  if any(b["hi"] < REFUTE for b in below.values()):
    return Verdict("refuted", reason, effect)
  return Verdict("inconclusive", reason, effect)


def planted_maps(rng: np.random.Generator, obeys_claim: bool, final_relu: bool, signal: bool = True,
                 n: int = 64, size: int = 8, k: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Class maps with a common field (without the ReLU a large one: a map added to every class, which the loss
  ignores) and, with `signal`, the present class's object. A map that `obeys_claim` puts the present map above
  every absent one everywhere; one that does not fires on half the image and leaves the absent maps at a level
  above its off-object part yet below its mean, so the means still classify right: the question's
  counterexample. With `final_relu`, the maps pass a ReLU."""
  labels = rng.integers(0, k, n)
  common = 1 + 0.5 * rng.standard_normal((n, size, size, 1)) if final_relu else 5 * rng.standard_normal(
      (n, size, size, 1))
  maps = common + 0.05 * rng.standard_normal((n, size, size, k))
  if signal:
    on_object = np.zeros((n, size, size, 1))
    on_object[:, :, : size // 2] = 1.0  # half the image
    present = np.arange(k) == labels[:, None, None, None]
    maps += present * (1.0 + on_object) if obeys_claim else np.where(present, 2.0 * on_object, 0.6)
  return (np.maximum(maps, 0) if final_relu else maps), labels


def controls() -> list[Control]:
  def summaries(obeys_claim: bool, dead_arm: bool = False) -> dict:
    points = {}
    for relu in (False, True) + ((True,) if dead_arm else ()):
      runs = []
      for seed in range(5):
        rng = np.random.default_rng(seed)
        trained, untrained = (planted_maps(rng, obeys_claim, relu, signal) for signal in (True, False))
        if len(points) == 2:  # the dead arm: a network whose class 0 map died, which violates the claim
          trained = (np.where(np.arange(trained[0].shape[-1]) == 0, 0.0, trained[0]), trained[1])
        runs.append({**measure_maps(*trained, relu),
                     **{f"untrained/{m}": v for m, v in measure_maps(*untrained, relu).items()}})
      key = f"planted_final-relu-{relu}" + ("_dead" if len(points) == 2 else "")
      points[key] = summarize_point({"dataset": "planted", "final_relu": relu}, runs)
    return points
  return [Control("positive: planted maps, every absent map below the present one everywhere (a common field "
                  "added to all)", "supported", summaries(True)),
          Control("negative: planted maps classified right by their means, but the absent maps above the "
                  "present one on half the image", "refuted", summaries(False)),
          Control("dead arm: the positive's settings beside one whose class-0 map is zero everywhere: the dead "
                  "setting is reported, not scored", "supported", summaries(True, dead_arm=True))]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  return [metric_vs_param(summaries, "dataset", m, "final_relu", out_dir / f"{m}.png")
          for m in ("absent_below_present", "absent_centred_below_zero", "logit_margin")]


EXPERIMENT = Experiment(
    name="absent_maps",
    question="Does training make the class map of an absent class lie below the present class's everywhere?",
    hypothesis=f"In trained GAP networks, more than {SUPPORT:.0%} of absent-class map locations lie below the "
               "present class's map at the same location, in every setting, far more than at initialization.",
    metrics={"absent_below_present": "share of (image, absent class, location) where the present class's map "
                                     "is higher (test split; a difference of maps, which the loss determines), "
                                     "or, behind the final ReLU, the absent map is at zero",
             "worst_image_below_present": "that share for the worst test image",
             "logit_margin": "mean of present minus absent map (the mean logit margin)",
             "absent_centred_below_zero": "share of absent-class locations below zero once every location's "
                                          "maps are centred across classes",
             "absent_at_zero": "with the final ReLU only: share of absent-class locations exactly at zero",
             "dead_class_maps": "with the final ReLU only: share of classes whose map is zero on every test "
                                "image (a dead map; such a setting is reported and not scored)",
             "test_accuracy": "test accuracy"},
    decision_rule=f"Supported if, in every setting, the 95% interval of absent_below_present lies above "
                  f"{SUPPORT} and every lower bound is at least {ABOVE_NULL} above the same networks at "
                  f"initialization. Refuted if in some setting the interval lies below {REFUTE} (absent maps "
                  "above the present one at more than a fifth of locations). Otherwise inconclusive. Planted "
                  "controls (a positive and a negative) must come out supported and refuted first; runs below "
                  f"{TRAIN_ACCURACY_FLOOR} train accuracy are left out, and a setting with fewer than 2 runs "
                  "above it is left out of the verdict (a dead ReLU network's maps are all zero); a setting whose "
                  "kept runs still have a class map that is zero on every test image is reported as dead and not "
                  "scored.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls,
    train_accuracy_floor=TRAIN_ACCURACY_FLOOR, convergence=Convergence())
