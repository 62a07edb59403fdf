"""The head comparisons' measures on planted data: the localization experiment scores only margin maps (which
the loss determines) and scores by hand-checkable numbers, its planted GMP-like maps localize worse, and the
GAP-vs-FC rule stays inconclusive when datasets disagree."""

import numpy as np
import pytest

from experiments import gap_vs_fc
from experiments import gap_vs_gmp_localization as loc
from experiments.measures import margin_maps


def test_localization_measure_ignores_a_field_added_to_every_class_map():
  """Adding any (N, H, W) array to every class's map changes no softmax output, so no score may move; the
  raw present-class map's scores do move, which is why the margin map is scored."""
  maps, labels, boxes, masks = loc.planted_maps(0, covers=True, field=0.0)  # no common field yet
  correct = np.ones(len(labels), bool)
  field = 10 * np.random.default_rng(1).standard_normal(maps.shape[:3])
  shifted = maps + field[..., None]
  base = loc.measure_maps(margin_maps(maps, labels), correct, boxes, masks)
  moved = loc.measure_maps(margin_maps(shifted, labels), correct, boxes, masks)
  assert moved == pytest.approx(base, abs=1e-6)
  present = lambda m: m[np.arange(len(labels)), :, :, labels]
  raw = loc.measure_maps(present(maps), correct, boxes, masks)
  raw_moved = loc.measure_maps(present(shifted), correct, boxes, masks)
  assert raw["pxap"] > 90 and raw_moved["pxap"] < 50 and raw["max_box_acc"] - raw_moved["max_box_acc"] > 50


def test_localization_scores_by_hand():
  # one 8x8 image, the object a 3x4 rectangle (12 of 64 pixels): the inclusive box (2, 1, 4, 4)
  mask = np.zeros((1, 8, 8), bool)
  mask[0, 2:5, 1:5] = True
  boxes, correct = np.array([[2, 1, 4, 4]]), np.array([True])
  exact = loc.measure_maps(mask.astype(float), correct, boxes, mask)
  assert exact["pxap"] == pytest.approx(100) and exact["max_box_acc"] == 100 and exact["cam20_top1_loc"] == 100
  assert exact["floor_pxap"] == pytest.approx(100 * 12 / 64) and exact["floor_whole_image_box_acc"] == 0
  # a map on one column of the object: precision 1 up to recall 1/4, then the whole image (precision 12/64);
  # its box (3x1) has IoU 1/4 with the object's and the whole image 12/64, both below 0.5
  part = np.zeros((1, 8, 8))
  part[0, 2:5, 1] = 1.0
  scored = loc.measure_maps(part, correct, boxes, mask)
  assert scored["pxap"] == pytest.approx(100 * (0.25 + 0.75 * 12 / 64)) and scored["max_box_acc"] == 0


def test_planted_peak_maps_fire_on_the_object_and_localize_worse_than_covering_maps():
  negative = loc.controls()[1].summaries  # GAP's maps are the peaks there, GMP's cover the object
  by = {p["params"]["head"]: p for p in negative.values()}
  for metric in ("pxap", "max_box_acc"):
    assert by["gap"][metric]["hi"] < by["gmp"][metric]["lo"], metric
    assert all(p < c for p, c in zip(by["gap"][metric]["values"], by["gmp"][metric]["values"]))  # seed by seed
  assert by["gap"]["pxap"]["mean"] > by["gap"]["floor_pxap"]["mean"]  # a peak on the object beats knowing nothing
  maps, labels, _, masks = loc.planted_maps(0, covers=False)
  margin = margin_maps(maps, labels)
  top = margin.reshape(len(margin), -1).argmax(1)
  assert masks.reshape(len(masks), -1)[np.arange(len(masks)), top].all()  # each peak lies on its object
  fired = (margin > 0.5).sum((1, 2))  # above half the peak: its 3x3 neighbourhood at most, a small part of the object
  assert fired.max() <= 9 and (fired / masks.sum((1, 2))).mean() < 0.25


def test_gap_vs_fc_is_inconclusive_when_datasets_disagree_or_a_head_is_missing():
  positive, negative = (c.summaries for c in gap_vs_fc.controls())
  mixed = {**{k: p for k, p in positive.items() if p["params"]["dataset"] == "planted-easy"},
           **{k: p for k, p in negative.items() if p["params"]["dataset"] == "planted-hard"}}
  verdict = gap_vs_fc.decide(mixed)
  assert verdict.verdict == "inconclusive"
  assert "-> supported" in verdict.reason.split("planted-hard")[0] and verdict.reason.endswith("-> refuted.")
  lacking = {k: p for k, p in positive.items() if k != "planted-hard_fc"}
  verdict = gap_vs_fc.decide(lacking)
  assert verdict.verdict == "inconclusive" and "planted-hard: the sweep lacks ['fc']" in verdict.reason
