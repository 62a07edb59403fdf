"""Localization scores: limits (perfect and inverted maps), hand-computed cases, the fixed protocol's
threshold chosen on a held-out split, and the connected components against a breadth-first search."""

import numpy as np
import pytest

from gap_jax.analysis.localization import (
    box_iou, cam_boxes, fixed_protocol_scores, localization_scores, mask_boxes, pxap, superlevel_components)


def boxes_to_masks(boxes_N4, h: int, w: int) -> np.ndarray:
  masks = np.zeros((len(boxes_N4), h, w), bool)
  for m, (y0, x0, y1, x1) in zip(masks, boxes_N4):
    m[y0:y1 + 1, x0:x1 + 1] = True
  return masks


def interior_boxes(rng, n: int, size: int) -> np.ndarray:
  """Boxes that keep off the border (so an inverted map's ring spans the whole image); some small, some
  large enough that the whole-image box alone reaches IoU 0.5."""
  sides = rng.integers(3, size - 2, (n, 2))
  y0 = rng.integers(1, size - sides[:, 0])
  x0 = rng.integers(1, size - sides[:, 1])
  return np.stack([y0, x0, y0 + sides[:, 0] - 1, x0 + sides[:, 1] - 1], -1)


def test_perfect_maps_score_100_and_inverted_maps_the_floor():
  rng = np.random.default_rng(0)
  size = 20
  gt = interior_boxes(rng, 40, size)
  masks = boxes_to_masks(gt, size, size)
  perfect = localization_scores(masks * 3.0 - 1.0, gt, masks)
  for key in ("max_box_acc", "max_box_acc_v2", "pxap", "cam20_box_acc"):
    assert perfect[key] == pytest.approx(100), key
  inverted = localization_scores(~masks * 1.0, gt, masks)
  assert 0 < inverted["floor_whole_image_box_acc"] < 100  # the set has both kinds of box
  assert inverted["max_box_acc"] == pytest.approx(inverted["floor_whole_image_box_acc"])
  assert inverted["max_box_acc_v2"] == pytest.approx(inverted["floor_whole_image_box_acc_v2"])
  assert inverted["pxap"] == pytest.approx(inverted["floor_pxap"]) == pytest.approx(100 * masks.mean())


def test_pxap_hand_computed():
  """Scores 0.9 (fg), 0.6 (bg), 0.3 (fg), 0 (bg): P/R steps (1, 1/2), (1/2, 1/2), (2/3, 1), (1/2, 1), so
  AP = 1 * 1/2 + 2/3 * 1/2 = 5/6."""
  maps = np.array([[[0.9, 0.6, 0.3, 0.0]]])
  masks = np.array([[[True, False, True, False]]])
  assert pxap(maps, masks)[0] == pytest.approx(100 * 5 / 6)


def test_max_box_acc_hand_computed():
  """Image A: a 2x2 peak (0.9) on its 2x2 box and a larger 3x3 plateau (0.5) elsewhere: the largest
  component is the right one only above 0.5 / 0.9 = 0.556; the best component is right at every
  threshold above 0. Image B: a 4x4 block shifted one row off its 4x4 box: IoU 12/20 = 0.6."""
  a, b = np.zeros((8, 8)), np.zeros((8, 8))
  a[0:2, 0:2], a[4:7, 4:7] = 0.9, 0.5
  b[3:7, 2:6] = 1.0
  gt = np.array([[0, 0, 1, 1], [2, 2, 5, 5]])
  scores = localization_scores(np.stack([a, b]), gt)
  curve = np.array(scores["curves"]["box_acc"])
  assert curve[0] == 0  # tau 0: both whole-image boxes (IoU 4/64 and 16/64)
  assert (curve[1:56] == 50).all() and (curve[56:] == 100).all()
  assert scores["max_box_acc"] == 100 and scores["max_box_acc_threshold"] == 0.56
  v2 = scores["max_box_acc_v2_by_iou"]
  assert (v2["0.3"], v2["0.5"], v2["0.7"]) == (100, 100, 50)
  assert scores["max_box_acc_v2"] == pytest.approx(250 / 3)
  assert scores["cam20_box_acc"] == 50  # A's 20%-of-max region keeps the plateau, the larger component
  iou, boxes = cam_boxes(np.stack([a, b]), gt_boxes=gt)
  np.testing.assert_array_equal(boxes, [[4, 4, 6, 6], [3, 2, 6, 5]])
  np.testing.assert_allclose(iou, [0, 0.6])


def test_fixed_protocol_scores_test_at_the_threshold_the_held_out_split_chose():
  """Every map: a 2x2 core (1.0) inside a 4x4 plateau (0.5), so {map >= tau} is the whole image at tau 0,
  the 4x4 plateau up to 0.5 and the 2x2 core above. Held-out objects are the 4x4 plateau: its BoxAcc is
  best from tau 0.01 (the lowest best). Test objects: three 2x2 cores and one 4x4 plateau; at 0.01 only the
  plateau image is right (the core's IoU with the plateau box is 4/16 < 0.3): 25% at every IoU, though the
  test split's own best threshold (above 0.5) would give 75%."""
  m = np.zeros((8, 8))
  m[2:6, 2:6], m[3:5, 3:5] = 0.5, 1.0
  plateau, core = [2, 2, 5, 5], [3, 3, 4, 4]
  test_boxes = np.array([core, core, core, plateau])
  test_masks = boxes_to_masks(test_boxes, 8, 8)
  scores = fixed_protocol_scores(np.stack([m] * 3), np.array([plateau] * 3), np.stack([m] * 4), test_boxes,
                                 test_masks)
  assert scores["max_box_acc_v2_threshold_by_iou"] == {"0.3": 0.01, "0.5": 0.01, "0.7": 0.01}
  assert scores["max_box_acc_v2_by_iou"] == {"0.3": 25, "0.5": 25, "0.7": 25}
  assert scores["max_box_acc_v2"] == 25 and scores["test_chosen_max_box_acc_v2"] == 75
  assert scores["max_box_acc"] == 25 and scores["max_box_acc_threshold"] == 0.01
  # PxAP is threshold-free: 16 core pixels all foreground (recall 16/28), then the plateau's 48 pixels of
  # which 12 are foreground (precision 28/64 up to recall 1).
  assert scores["pxap"] == pytest.approx(100 * (16 / 28 + 28 / 64 * 12 / 28))
  assert scores["floor_pxap"] == pytest.approx(100 * 28 / 256) and scores["floor_whole_image_box_acc"] == 0
  # A held-out split of cores moves the threshold above 0.5, where the test split scores its own best.
  swapped = fixed_protocol_scores(np.stack([m] * 2), np.array([core] * 2), np.stack([m] * 4), test_boxes[:, None],
                                  test_masks)
  assert swapped["max_box_acc_v2_threshold_by_iou"]["0.5"] == 0.51
  assert swapped["max_box_acc_v2"] == swapped["test_chosen_max_box_acc_v2"] == 75
  assert swapped["pxap"] == scores["pxap"]
  # Two boxes per test image (the second a copy, as ground_truth pads missing objects) change nothing.
  padded = fixed_protocol_scores(np.stack([m] * 3), np.array([plateau] * 3), np.stack([m] * 4),
                                 np.stack([test_boxes, test_boxes], 1), test_masks)
  assert padded == scores


def test_fixed_protocol_equals_choosing_on_test_when_the_held_out_split_is_the_test_split():
  rng = np.random.default_rng(2)
  gt = interior_boxes(rng, 30, 16)
  masks = boxes_to_masks(gt, 16, 16)
  maps = masks + rng.normal(0, 0.6, masks.shape)
  fixed, chosen = fixed_protocol_scores(maps, gt, maps, gt, masks), localization_scores(maps, gt, masks)
  for key in ("max_box_acc", "max_box_acc_v2", "pxap", "floor_pxap", "floor_whole_image_box_acc_v2"):
    assert fixed[key] == pytest.approx(chosen[key]), key
  assert fixed["test_chosen_max_box_acc_v2"] == pytest.approx(chosen["max_box_acc_v2"])
  assert 0 < fixed["max_box_acc_v2"] < 100  # noisy enough that the threshold matters


def test_box_iou_counts_pixels_inclusively():
  assert box_iou(np.array([0, 0, 1, 1]), np.array([1, 1, 2, 2])) == pytest.approx(1 / 7)
  assert box_iou(np.array([0, 0, 1, 1]), np.array([2, 2, 3, 3])) == 0
  np.testing.assert_array_equal(mask_boxes(boxes_to_masks(np.array([[1, 2, 3, 5]]), 6, 7)), [[1, 2, 3, 5]])


def bfs_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
  h, w = mask.shape
  seen, comps = np.zeros_like(mask), []
  for i, j in zip(*np.nonzero(mask)):
    if seen[i, j]:
      continue
    stack, pixels = [(i, j)], []
    seen[i, j] = True
    while stack:
      y, x = stack.pop()
      pixels.append((y, x))
      for yy in range(max(y - 1, 0), min(y + 2, h)):
        for xx in range(max(x - 1, 0), min(x + 2, w)):
          if mask[yy, xx] and not seen[yy, xx]:
            seen[yy, xx] = True
            stack.append((yy, xx))
    comps.append(pixels)
  return comps


def test_components_match_a_breadth_first_search():
  rng = np.random.default_rng(1)
  n, h, w = 12, 7, 9
  maps = rng.random((n, h, w)).round(1)  # ties and many components
  gt = np.stack([rng.integers(0, 3, n), rng.integers(0, 3, n), rng.integers(3, h, n), rng.integers(4, w, n)],
                -1)
  taus = np.array([0.0, 0.25, 0.5, 0.7, 0.9, 1.0, 1.01])
  largest, iou_largest, iou_best = superlevel_components(maps, taus, gt)
  for i in range(n):
    for j, tau in enumerate(taus):
      comps = bfs_components(maps[i] >= tau)
      if not comps:
        assert (largest[i, j] == -1).all() and iou_best[i, j] == 0
        continue
      ys, xs = [[p[0] for p in c] for c in comps], [[p[1] for p in c] for c in comps]
      boxes = np.array([[min(y), min(x), max(y), max(x)] for y, x in zip(ys, xs)])
      sizes = np.array([len(c) for c in comps])
      assert any((boxes[k] == largest[i, j]).all() for k in np.nonzero(sizes == sizes.max())[0])
      assert iou_largest[i, j] == pytest.approx(box_iou(largest[i, j], gt[i]))
      assert iou_best[i, j] == pytest.approx(box_iou(boxes, gt[i]).max())
