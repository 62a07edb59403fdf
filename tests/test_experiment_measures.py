"""The experiments' measurement helpers against hand-made cases, and the procedural datasets' ground
truth against the data modules that make it."""

import numpy as np
import pytest

from experiments.measures import active_region, best_fit_side, dilate, region_iou
from gap_jax.analysis.ground_truth import ground_truth, inclusive_boxes
from gap_jax.analysis.localization import mask_boxes
from gap_jax.configs import default
from gap_jax.data import load_dataset


def square_mask(size: int, y0: int, x0: int, side: int) -> np.ndarray:
  m = np.zeros((1, size, size), bool)
  m[0, y0:y0 + side, x0:x0 + side] = True
  return m


def test_dilate_grows_by_half_the_side_each_way_and_clips_at_the_border():
  np.testing.assert_array_equal(dilate(square_mask(9, 4, 4, 1), 3), square_mask(9, 3, 3, 3))
  np.testing.assert_array_equal(dilate(square_mask(9, 0, 0, 2), 5), square_mask(9, 0, 0, 4))
  np.testing.assert_array_equal(dilate(square_mask(9, 2, 5, 3), 1), square_mask(9, 2, 5, 3))
  two = np.concatenate([square_mask(9, 0, 0, 1), np.zeros((1, 9, 9), bool)])
  assert not dilate(two, 9)[1].any()  # images do not grow into each other
  with pytest.raises(ValueError, match="odd"):
    dilate(two, 4)


def test_region_iou_counts_pixels():
  a, b = square_mask(6, 0, 0, 2), square_mask(6, 0, 1, 2)  # overlap one column of two pixels
  assert region_iou(a, b)[0] == pytest.approx(2 / 6)
  assert region_iou(a, a)[0] == 1 and region_iou(a, ~a)[0] == 0
  empty = np.zeros((1, 6, 6), bool)
  assert region_iou(empty, empty)[0] == 1


def test_a_region_one_field_wider_than_the_object_matches_the_grown_mask():
  """A 3x3 object and an active region of 7x7 around it (a field of side 5 reaching 2 px out): IoU 9/49
  with the mask, 1 with the mask grown by 5, and 5 is the side that fits best."""
  mask, region = square_mask(15, 6, 6, 3), square_mask(15, 4, 4, 7)
  assert region_iou(region, mask)[0] == pytest.approx(9 / 49)
  assert region_iou(region, dilate(mask, 5))[0] == 1
  assert best_fit_side(region, mask) == 5
  # the whole image: the first side that reaches the 6 px from the object to every border
  assert best_fit_side(np.ones((1, 15, 15), bool), mask) == 13


def test_active_region_is_above_tau_times_the_maps_own_max():
  """As map_stats' frac_above_tau: an all-negative map has no active location (tau * max > max)."""
  maps = np.array([[[4.0, 2.1], [1.9, -1.0]], [[-3.0, -1.0], [-2.0, -1.5]]])
  np.testing.assert_array_equal(active_region(maps, 0.5), [[[True, True], [False, False]],
                                                          [[False, False], [False, False]]])


def test_inclusive_boxes_subtract_one_from_the_ends_and_fill_missing_objects():
  np.testing.assert_array_equal(inclusive_boxes(np.array([[2, 3, 5, 7]])), [[2, 3, 4, 6]])
  boxes = np.array([[[2, 3, 5, 7], [-1, -1, -1, -1]], [[0, 0, 4, 4], [6, 6, 8, 9]]])
  np.testing.assert_array_equal(inclusive_boxes(boxes), [[[2, 3, 4, 6], [2, 3, 4, 6]],
                                                         [[0, 0, 3, 3], [6, 6, 7, 8]]])


@pytest.mark.parametrize("name,max_objects", [("shapes", 1), ("shapes", 2), ("arrangement", None)])
def test_procedural_ground_truth_matches_the_loaded_split(name, max_objects):
  c = default.get_config()
  c.dataset = name
  c[name].num_train, c[name].num_test = 16, 24
  if max_objects:
    c.shapes.max_objects = max_objects
  data = load_dataset(c)
  for split in ("train", "test"):
    gt, source = ground_truth(c, data, split)
    assert gt is not None and source.startswith(name), source
    assert gt.masks_NHW.shape == getattr(data, split).images.shape[:3]
    boxes = gt.boxes_N4.reshape(len(gt.masks_NHW), -1, 4)
    # inclusive boxes: every object's box lies inside the mask's extent, and their union is that extent
    extent = mask_boxes(gt.masks_NHW)
    np.testing.assert_array_equal(boxes[:, :, :2].min(1), extent[:, :2])
    np.testing.assert_array_equal(boxes[:, :, 2:].max(1), extent[:, 2:])
    for m, image_boxes in zip(gt.masks_NHW, boxes):
      for y0, x0, y1, x1 in image_boxes:
        assert m[y0, x0:x1 + 1].any() and m[y1, x0:x1 + 1].any() and m[y0:y1 + 1, x0].any()
  c[name].seed = 5  # the config no longer describes these images
  assert ground_truth(c, data, "test")[0] is None
