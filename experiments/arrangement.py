"""Can GAP tell classes apart that differ only in how identical motifs are arranged, and what receptive
field does that take? On `arrangement` (gap_jax/data/arrangement.py): a layout of five motifs
("bar_over_pair"), its 180-degree turn, and a control layout ("x").

A layout and its turn have one distribution of pair statistics (counts of bright-pixel pairs at each offset,
experiments/shortcuts.py), so a unit that sees pairs, pooled over positions, cannot tell them apart: the
shortcut that classified the old x / plus / scattered layouts at 0.98 from a 13 px field is gone by
construction, and is measured on every run's data (`pair_shortcut_rotation_pair`). Both are made of pieces
that are their own turn, two cells apart, so a field that cannot reach across the layout sees the same pieces
in both. The fields the data need are read from its geometry: `blind_field` (never touches two motifs two
cells apart) and `extent` (the smallest square that always holds the whole layout).

RFNet of three 3x3 layers at fixed width and parameter count; the field is turned with mixed dilation rates
that leave no pixel of the field out (no gridding, rfnet.gridded). Circular padding: zero padding would let a
small field read how far a piece is from the border (Kayhan & van Gemert 2020), which differs between a
layout and its turn. GAP decides; GMP and FC (which keeps position) are reported beside it.
"""

import functools
import json

import ml_collections
import numpy as np

from experiments import shortcuts
from experiments.convergence import ACCURACY_CONVERGENCE
from experiments.framework import Control, Experiment, Point, Verdict, point_keys, short_run, summarize_point
from experiments.stats import balanced_accuracy, equivalent, fmt
from gap_jax.data import arrangement
from gap_jax.data.arrangement import CONTROL, ROTATION_PAIR
from gap_jax.data.types import Split
from gap_jax.models.rfnet import gridded, receptive_field

CELL, MOTIF, JITTER, IMAGE_SIZE = 7, 2, 1, 32
BLIND = arrangement.blind_field(CELL, MOTIF, JITTER)  # 11 px: sees one piece of the layout at a time
NEEDED = arrangement.extent(CELL, MOTIF, JITTER)  # 18 px: always holds the whole layout
KERNEL, WIDTH = 3, 16
STEPS = {True: 300, False: 600}  # by quick: 300 take GAP at 27 px to 0.999 in a pilot run (150: 0.84)
TRAIN_ACCURACY_FLOOR = 0.6  # at most 11 px only the control can be learnt (2/3); below 0.6 not even that
# Rates per layer by receptive field (px), none gridded: at the blind field, between it and the extent
# (parts of both pieces in some images: shown, not decided on), and two that cover the layout: at 19 px
# only 2 x 2 units see all of it, at 27 px 10 x 10 (the one decided on).
SCHEDULES = {11: (1, 2, 2), 15: (1, 2, 4), 19: (1, 3, 5), 27: (1, 3, 9)}
HEADS = ("gap", "gmp", "fc")
CHANCE, MARGIN = 0.5, 0.05  # the rotation pair below the field it needs: within 0.5 +- 0.05 (two one-sided t tests)
NEAR_PERFECT_LO, CONTROL_LO = 0.9, 0.9  # interval bounds at covering fields, and for the control everywhere
ABOVE_CHANCE_LO, NEVER_HI = CHANCE + MARGIN, 0.6  # the refutations' bounds (decision_rule below)


def config(head: str, rf: int, quick: bool) -> ml_collections.ConfigDict:
  c = short_run("rfnet", head, "arrangement", STEPS[quick], dilations=SCHEDULES[rf], width=WIDTH)
  c.final_relu = False  # unconstrained maps; a ReLU'd map can die in a short run
  c.dropout = 0.0
  c.padding = "circular"
  a = c.arrangement
  a.cell, a.motif, a.jitter, a.image_size = CELL, MOTIF, JITTER, IMAGE_SIZE
  a.num_train = 4096
  return c


def params(head: str, rf: int) -> dict:
  """A point's params, shared by the sweep and the planted controls so decide reads both alike."""
  rates = SCHEDULES[rf]
  assert receptive_field(len(rates), KERNEL, dilations=rates) == rf and not gridded(KERNEL, rates), rates
  return {"head": head, "dilations": "-".join(map(str, rates)), "receptive_field": rf}


def grid(quick: bool) -> list[tuple[str, int]]:
  if quick:
    return [("gap", BLIND), ("gap", max(SCHEDULES))]
  return [(h, rf) for h in HEADS for rf in SCHEDULES]


def sweep(quick: bool) -> list[Point]:
  return [Point(f"head-{h}_rf-{rf}", params(h, rf), config(h, rf, quick)) for h, rf in grid(quick)]


def measure_logits(logits_NK: np.ndarray, labels_N: np.ndarray) -> dict:
  """Rotation pair: balanced accuracy on its images from its two classes' logits alone (a network that
  says "control" is not scored on it here). Control: balanced accuracy of "the network says control"."""
  logits = np.asarray(logits_NK, np.float64)
  pair = np.isin(labels_N, ROTATION_PAIR)
  rotation = np.asarray(ROTATION_PAIR)[logits[pair][:, list(ROTATION_PAIR)].argmax(1)]
  said_control = (logits.argmax(1) == CONTROL).astype(int)
  return {"rotation_pair": balanced_accuracy(rotation, labels_N[pair]),
          "control": balanced_accuracy(said_control, (labels_N == CONTROL).astype(int))}


def pair_shortcut(train, test) -> float:
  """Pair-statistics accuracy between the rotation pair's classes (logistic regression fit on their training
  images, scored on their test images): what a field that sees pairs, pooled, gets of the rotation pair."""
  keep = lambda split: np.isin(split.labels, ROTATION_PAIR)
  return shortcuts.logistic_accuracy(shortcuts.pair_features(train.images[keep(train)]), train.labels[keep(train)],
                                     shortcuts.pair_features(test.images[keep(test)]), test.labels[keep(test)])


_PAIR_SHORTCUTS = {}  # by dataset config: measured once per dataset (measure runs on the trained and untrained net)


def measure(point, trained) -> dict:
  from gap_jax.analysis.class_maps import class_maps
  c, data = trained.config, trained.data
  n = c.eval_train_examples
  logits, _ = class_maps(trained, np.concatenate([data.test.images, data.train.images[:n]]))  # one compile
  on_train = measure_logits(logits[len(data.test):], data.train.labels[:n])
  data_key = json.dumps(c.arrangement.to_dict(), sort_keys=True)
  if data_key not in _PAIR_SHORTCUTS:
    _PAIR_SHORTCUTS[data_key] = pair_shortcut(data.train, data.test)
  return {**measure_logits(logits[:len(data.test)], data.test.labels),
          **{f"{k}_train": v for k, v in on_train.items()},
          "pair_shortcut_rotation_pair": _PAIR_SHORTCUTS[data_key]}


def decide(summaries: dict) -> Verdict:
  gap = sorted((p for p in summaries.values() if p["params"]["head"] == "gap"),
               key=lambda p: p["params"]["receptive_field"])
  below = [p for p in gap if p["params"]["receptive_field"] <= BLIND]
  covering = [p for p in gap if p["params"]["receptive_field"] >= NEEDED]
  if not below or not covering:
    return Verdict("inconclusive", f"the sweep lacks a GAP point with a field of at most {BLIND} px or one of "
                   f"at least {NEEDED} px", {})
  b, a = below[-1], covering[-1]  # the largest covering field: the most units see the whole layout
  rf = lambda p: p["params"]["receptive_field"]
  at_chance = equivalent(b["rotation_pair"]["values"], CHANCE, MARGIN)
  shortcut_at_chance = equivalent(b["pair_shortcut_rotation_pair"]["values"], CHANCE, MARGIN)
  control_seen = all(p["control"]["lo"] > CONTROL_LO for p in gap)
  effect = {"rotation_pair_gain_when_rf_covers": a["rotation_pair"]["mean"] - b["rotation_pair"]["mean"],
            "rotation_pair_below_minus_chance": b["rotation_pair"]["mean"] - CHANCE,
            "pair_shortcut_minus_chance": b["pair_shortcut_rotation_pair"]["mean"] - CHANCE}
  every = ", ".join(f"{p['rotation_pair']['mean']:.3f} (control {p['control']['mean']:.3f}, train "
                    f"{p['rotation_pair_train']['mean']:.3f} / {p['control_train']['mean']:.3f}) at {rf(p)} px"
                    for p in gap)
  reason = (f"GAP, rotation pair: {fmt(b['rotation_pair'], digits=3)} at {rf(b)} px (at most the blind field, "
            f"{BLIND} px; {'' if at_chance else 'not '}shown within {CHANCE} +- {MARGIN}), "
            f"{fmt(a['rotation_pair'], digits=3)} at {rf(a)} px (covers the layout's {NEEDED} px). Every GAP "
            f"point, test (train: rotation pair / control): {every}. Pair statistics between the rotation pair: "
            f"{fmt(b['pair_shortcut_rotation_pair'], digits=3)} ({'' if shortcut_at_chance else 'not '}shown "
            f"within {CHANCE} +- {MARGIN}).")
  # The points the verdict rests on: the blind and the covering field. The fields between, and the other heads,
  # are reported as measured (the control, read at every GAP field, is a check on the data, right at each).
  keys = functools.partial(point_keys, summaries)
  if at_chance and shortcut_at_chance and control_seen and a["rotation_pair"]["lo"] > NEAR_PERFECT_LO:
    return Verdict("supported", reason, effect, rests_on=keys([b, a]))
  never = all(p["rotation_pair"]["hi"] < NEVER_HI for p in covering)
  if b["rotation_pair"]["lo"] > ABOVE_CHANCE_LO:
    return Verdict("refuted", reason, effect, rests_on=keys([b]))
  if control_seen and never:
    return Verdict("refuted", reason, effect, rests_on=keys(covering))
  return Verdict("inconclusive", reason, effect)


def planted_run(rng, pair_level: float, n: int = 300) -> dict:
  """One planted run: logits of a hand-made network on n test labels that gets the control right and each
  rotation-pair image right with probability `pair_level`, through the experiment's own measure."""
  labels = rng.integers(0, 3, n)
  right = rng.random(n) < pair_level
  said = np.where(np.isin(labels, ROTATION_PAIR) & ~right, 1 - labels, labels)
  logits = np.eye(3)[said] + rng.normal(0, 0.01, (n, 3))
  accuracy = float((logits.argmax(1) == labels).mean())
  m = measure_logits(logits, labels)
  return {"test_accuracy": accuracy, "train_accuracy": accuracy, **m, **{f"{k}_train": v for k, v in m.items()},
          "pair_shortcut_rotation_pair": planted_shortcut(int(rng.integers(4)))}


@functools.lru_cache(maxsize=4)
def planted_shortcut(seed: int) -> float:
  """The pair shortcut on a small dataset of the experiment's geometry (the control's data fact)."""
  kwargs = dict(image_size=IMAGE_SIZE, cell=CELL, motif=MOTIF, jitter=JITTER)
  train, test = (Split(*arrangement.generate(400, s, **kwargs)[:2]) for s in (2 * seed, 2 * seed + 1))
  return pair_shortcut(train, test)


def planted_summaries(pair_level, seeds: int = 5) -> dict:
  """The full sweep's points from planted runs whose rotation pair is right with probability
  pair_level(head, rf)."""
  points = {}
  for h, rf in grid(quick=False):
    runs = [planted_run(np.random.default_rng([rf, seed, HEADS.index(h)]), pair_level(h, rf)) for seed in range(seeds)]
    points[f"planted_head-{h}_rf-{rf}"] = summarize_point(params(h, rf), runs)
  return points


def controls() -> list[Control]:
  fc = lambda level: lambda h, rf: 1.0 if h == "fc" else level(rf)
  claim = fc(lambda rf: 0.5 if rf <= BLIND else 0.75 if rf < NEEDED else 1.0)
  return [Control(f"positive: a hand-made network at chance on the rotation pair up to {BLIND} px, right from "
                  f"{NEEDED} px, the control right everywhere", "supported", planted_summaries(claim)),
          Control(f"negative: the rotation pair right already at {BLIND} px (told without seeing the layout)",
                  "refuted", planted_summaries(fc(lambda rf: 1.0))),
          Control("negative: the rotation pair at chance at every field, the control right (the layout never "
                  "told)", "refuted", planted_summaries(fc(lambda rf: 0.5)))]


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  return [metric_vs_param(summaries, "receptive_field", metric, "head", out_dir / f"{metric}_vs_rf.png",
                          reference=(NEEDED, "layout extent"), chance=chance)
          for metric, chance in (("rotation_pair", CHANCE), ("control", CHANCE), ("test_accuracy", 1 / 3))]


EXPERIMENT = Experiment(
    name="arrangement",
    question="GAP sees only the mean of each class map. Can it separate classes that differ only in the "
             "arrangement of identical motifs, where pair statistics cannot, and what field does that take?",
    hypothesis=f"Between a layout and its 180-degree turn, GAP is at chance while the receptive field (RF) "
               f"cannot reach across the layout (at most {BLIND} px here) and near perfect once it covers the "
               f"layout ({NEEDED} px); the control layout, which differs in pair statistics, is separable at "
               "every field. FC, which keeps positions, is reported beside it.",
    metrics={"test_accuracy": "accuracy over the three classes on 1024 test images (chance 1/3)",
             "train_accuracy": "the same on 1024 training images",
             "rotation_pair": "balanced accuracy on the test images of the layout and its turn, from those two "
                              "classes' logits alone (chance 0.5)",
             "control": "balanced accuracy of 'the network says x' against 'it is x' (chance 0.5)",
             "rotation_pair_train": "rotation_pair on the 1024 training images",
             "control_train": "control on the 1024 training images",
             "pair_shortcut_rotation_pair": "logistic regression on pair statistics (offsets up to "
                                            f"{shortcuts.PAIR_MAX_OFFSET} px) between the layout and its turn, "
                                            "fit on their training images, test accuracy (Bayes ceiling 0.5)"},
    decision_rule=f"At the largest GAP field of at most {BLIND} px and the largest of at least {NEEDED} px. "
                  f"Supported if the rotation pair is within {CHANCE} +- {MARGIN} (two one-sided t tests over "
                  f"seeds, alpha 0.05) below, and so is the pair shortcut, its 95% interval lies above "
                  f"{NEAR_PERFECT_LO} at the covering field, and the control's lies above {CONTROL_LO} at every "
                  f"GAP field. Refuted if the rotation pair's interval lies above {ABOVE_CHANCE_LO} below the "
                  f"layout, or the control is separated at every GAP field while no covering field's rotation "
                  f"pair interval reaches {NEVER_HI}. Otherwise inconclusive. Fields between are shown, not "
                  "decided on (parts of both pieces in some images). Planted controls (a positive, two "
                  f"negatives) come out as expected first; runs below {TRAIN_ACCURACY_FLOOR} train accuracy are "
                  "left out.",
    sweep=sweep, measure=measure, decide=decide, figures=figures, controls=controls,
    train_accuracy_floor=TRAIN_ACCURACY_FLOOR, convergence=ACCURACY_CONVERGENCE)
