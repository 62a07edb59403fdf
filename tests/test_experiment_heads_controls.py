"""The head comparisons' measures on planted data: the localization experiment scores only margin maps (which
the loss determines), by hand-checkable numbers and with its thresholds chosen on a held-out split, its
planted GMP-like maps localize worse, and its rule judges each placement and field (gap_vs_fc's rule:
tests/test_gap_vs_fc.py)."""

import ml_collections
import numpy as np
import pytest

from experiments import gap_vs_gmp_localization as loc
from experiments.convergence import Convergence
from experiments.measures import margin_maps
from gap_jax.analysis.localization import localization_scores, mask_boxes, minmax_normalize
from gap_jax.data import shapes
from gap_jax.models.output import PLACEMENTS
from gap_jax.models.rfnet import gridded


def test_localization_measure_ignores_a_field_added_to_every_class_map():
  """Adding any (N, H, W) array to every class's map changes no softmax output, so no score may move; the
  raw present-class map's scores do move, which is why the margin map is scored."""
  maps, labels, boxes, masks = loc.planted_maps(0, covers=True, field=0.0)  # no common field yet
  h_maps, h_labels, h_boxes, _ = loc.planted_maps(1, covers=True, field=0.0)
  rng = np.random.default_rng(1)
  field, h_field = (10 * rng.standard_normal(m.shape[:3])[..., None] for m in (maps, h_maps))
  score = lambda held, test: loc.measure_maps(held, h_boxes, test, boxes, masks)
  base = score(margin_maps(h_maps, h_labels), margin_maps(maps, labels))
  moved = score(margin_maps(h_maps + h_field, h_labels), margin_maps(maps + field, labels))
  assert moved == pytest.approx(base, abs=1e-6)
  present = lambda m, y: m[np.arange(len(y)), :, :, y]
  raw = score(present(h_maps, h_labels), present(maps, labels))
  raw_moved = score(present(h_maps + h_field, h_labels), present(maps + field, labels))
  assert raw["pxap"] > 90 and raw_moved["pxap"] < 50 and raw["max_box_acc_v2"] - raw_moved["max_box_acc_v2"] > 50


def test_localization_scores_by_hand():
  # one 8x8 image, the object a 3x4 rectangle (12 of 64 pixels): the inclusive box (2, 1, 4, 4)
  mask = np.zeros((1, 8, 8), bool)
  mask[0, 2:5, 1:5] = True
  boxes = np.array([[2, 1, 4, 4]])
  exact = loc.measure_maps(mask.astype(float), boxes, mask.astype(float), boxes, mask)
  assert exact["pxap"] == pytest.approx(100) and exact["max_box_acc_v2"] == 100 and exact["max_box_acc"] == 100
  assert exact["floor_pxap"] == pytest.approx(100 * 12 / 64) and exact["floor_whole_image_box_acc_v2"] == 0
  # a map on one column of the object: precision 1 up to recall 1/4, then the whole image (precision 12/64);
  # its box (3x1) has IoU 1/4 with the object's and the whole image 12/64, both below 0.3
  part = np.zeros((1, 8, 8))
  part[0, 2:5, 1] = 1.0
  scored = loc.measure_maps(mask.astype(float), boxes, part, boxes, mask)
  assert scored["pxap"] == pytest.approx(100 * (0.25 + 0.75 * 12 / 64))
  assert scored["max_box_acc_v2"] == scored["test_chosen_max_box_acc_v2"] == 0


def test_the_box_score_uses_the_thresholds_the_held_out_split_chose_not_the_test_splits():
  """Held-out maps that are the test maps raised to the 4th power (after min-max normalisation) have the same
  components at the 4th power of each threshold, so they choose lower thresholds than the test split would:
  the score must be the test split's BoxAcc at the held-out choice, below its own best."""
  maps, labels, boxes, masks = loc.planted_maps(0, covers=True)
  test = margin_maps(maps, labels)
  heldout = minmax_normalize(test) ** 4
  scored = loc.measure_maps(heldout, boxes, test, boxes, masks)
  on_test, on_heldout = localization_scores(test, boxes, masks), localization_scores(heldout, boxes, masks)
  thresholds = np.array(on_test["curves"]["thresholds"])
  expected = []
  for d, tau in on_heldout["max_box_acc_v2_threshold_by_iou"].items():
    assert scored[f"heldout_threshold_iou_{d}"] == tau
    assert tau < on_test["max_box_acc_v2_threshold_by_iou"][d]
    expected.append(on_test["curves"]["box_acc_v2_by_iou"][d][int(np.argmin(abs(thresholds - tau)))])
  assert scored["max_box_acc_v2"] == pytest.approx(np.mean(expected))
  assert scored["test_chosen_max_box_acc_v2"] == pytest.approx(on_test["max_box_acc_v2"])
  assert scored["max_box_acc_v2"] < scored["test_chosen_max_box_acc_v2"] - 5
  assert scored["pxap"] == pytest.approx(on_test["pxap"])  # threshold-free: the held-out split plays no part


def test_planted_peak_maps_fire_on_the_object_and_localize_worse_than_covering_maps():
  negative = loc.controls()[1].summaries  # GAP's maps are the peaks there, GMP's cover the object
  by = {p["params"]["head"]: p for p in negative.values() if p["params"]["placement"] == PLACEMENTS[0]}
  for metric in loc.DECIDING:
    assert by["gap"][metric]["hi"] < by["gmp"][metric]["lo"], metric
    assert all(p < c for p, c in zip(by["gap"][metric]["values"], by["gmp"][metric]["values"]))  # seed by seed
  assert by["gap"]["pxap"]["mean"] > by["gap"]["floor_pxap"]["mean"]  # a peak on the object beats knowing nothing
  maps, labels, _, masks = loc.planted_maps(0, covers=False)
  margin = margin_maps(maps, labels)
  top = margin.reshape(len(margin), -1).argmax(1)
  assert masks.reshape(len(masks), -1)[np.arange(len(masks)), top].all()  # each peak lies on its object
  fired = (margin > 0.5).sum((1, 2))  # above half the peak: its 3x3 neighbourhood at most, a small part of the object
  assert fired.max() <= 9 and (fired / masks.sum((1, 2))).mean() < 0.25


def with_params(summaries: dict, **changes) -> dict:
  """The same planted summaries at other params (and test accuracy, when `test_accuracy` is given)."""
  accuracy = changes.pop("test_accuracy", None)
  out = {}
  for key, p in summaries.items():
    q = {**p, "params": {**p["params"], **changes}}
    if accuracy is not None:
      q["test_accuracy"] = {**p["test_accuracy"], "mean": accuracy}
    out[f"{key}_{'_'.join(map(str, changes.values()))}"] = q
  return out


def test_localization_rule_judges_each_placement_and_field_where_both_heads_classify():
  positive, negative = (c.summaries for c in loc.controls())
  in_placement = lambda s, placement: {k: p for k, p in s.items() if p["params"]["placement"] == placement}
  cpt, ptc = PLACEMENTS
  # GMP better in one placement refutes the claim, though the other supports it
  mixed = {**in_placement(positive, cpt), **in_placement(negative, ptc)}
  verdict = loc.decide(mixed)
  assert verdict.verdict == "refuted"
  assert verdict.reason.count("-> supported") == verdict.reason.count("-> refuted") == 1
  # a field where a head does not classify is left out, whichever way its maps point ...
  small = with_params(negative, field=5, test_accuracy=loc.ACCURACY_FLOOR - 0.01)
  verdict = loc.decide({**positive, **small})
  assert verdict.verdict == "supported" and verdict.reason.count("left out") == 2
  assert set(verdict.effect) == {f"{p}_field9_{m}_gap_minus_gmp" for p in PLACEMENTS for m in loc.DECIDING}
  # ... and a placement with no field where both classify leaves the claim undecided
  unlearned = with_params(in_placement(positive, ptc), test_accuracy=0.5)
  verdict = loc.decide({**in_placement(positive, cpt), **unlearned})
  assert verdict.verdict == "inconclusive"
  assert verdict.reason.startswith(f"No field where both heads classify in {ptc}")
  # one metric's difference above 0 and the other's exactly 0 (GMP given GAP's PxAP) is no support
  gap_pxap = lambda key: positive[key.replace("head-gmp", "head-gap")]["pxap"]
  flat = {k: {**p, "pxap": gap_pxap(k)} if p["params"]["head"] == "gmp" else p for k, p in positive.items()}
  assert loc.decide(flat).verdict == "inconclusive"


def test_localization_sweep_turns_the_field_across_the_object_size_in_both_placements():
  full, quick = loc.sweep(False), loc.sweep(True)
  assert len(full) == len({p.key for p in full}) == len(PLACEMENTS) * len(loc.LAYOUTS) * len(loc.HEADS)
  ratios = sorted({p.params["field_to_object"] for p in full})
  assert ratios[0] < 1 < ratios[-1] and len(ratios) == 3
  for p in full:
    rfnet = p.config.model_args.rfnet
    rates = rfnet.dilations or (rfnet.dilation,) * rfnet.depth
    assert 1 + (loc.KERNEL - 1) * sum(rates) == p.params["field"] and not gridded(loc.KERNEL, rates)
    assert p.config.head_placement == p.params["placement"] and p.config.head == p.params["head"]
  pairs = {(p.params["placement"], p.params["head"]) for p in quick}
  assert pairs == {(placement, h) for placement in PLACEMENTS for h in ("gap", "gmp")}
  assert len({p.params["field"] for p in quick}) == 1
  assert loc.EXPERIMENT.convergence == Convergence()


def test_object_side_is_the_mean_side_of_the_drawn_objects():
  _, _, masks, _ = shapes.generate(2000, 3, max_objects=1)
  boxes = mask_boxes(masks)
  sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
  assert sides.mean() == pytest.approx(loc.OBJECT_SIDE, abs=0.3)


def test_held_out_split_is_drawn_as_the_test_split_but_from_data_no_run_sees(monkeypatch):
  c = loc.config("gap", PLACEMENTS[0], loc.QUICK_LAYOUTS[0], quick=True).shapes
  c.num_test = loc.HELDOUT_IMAGES
  _, test, _ = shapes.load(ml_collections.ConfigDict({"shapes": c}))
  monkeypatch.setattr(loc, "HELDOUT_SEED_OFFSET", 1)  # at the test split's seed: the test split itself
  images, labels, boxes, masks = loc.heldout_split(c)
  np.testing.assert_array_equal(images, test.images)
  np.testing.assert_array_equal(labels, test.labels)
  np.testing.assert_array_equal(boxes[:, 0], mask_boxes(masks))  # one object: its box is its mask's extent
  monkeypatch.undo()
  heldout = loc.heldout_split(c)[0]
  for seed in range(loc.FULL_RUN_SEEDS + 1):  # every run's train (seed) and test (seed + 1) draw
    first = shapes.generate(4, seed, image_size=c.image_size, max_objects=1)[0]
    assert not (heldout[:4] == first).all()
