"""The experiments' measurement helpers against hand-made cases, and the procedural datasets' ground
truth against the data modules that make it."""

import numpy as np
import pytest

from experiments.measures import blur_fit, blur_fits, blurred, dilate, margin_maps, passive_overlap, region_iou
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


def test_margin_maps_are_present_minus_mean_absent_and_ignore_a_common_field():
  rng = np.random.default_rng(0)
  maps = rng.standard_normal((3, 4, 4, 3))
  labels = np.array([0, 2, 1])
  by_hand = np.stack([maps[i, ..., y] - np.delete(maps[i], y, -1).mean(-1) for i, y in enumerate(labels)])
  np.testing.assert_allclose(margin_maps(maps, labels), by_hand)
  np.testing.assert_allclose(margin_maps(maps + rng.standard_normal((3, 4, 4, 1)), labels), by_hand)


def test_blur_fit_finds_the_blur_a_map_was_made_with_whatever_its_offset_and_scale():
  mask = square_mask(24, 8, 9, 5)
  for sigma in (0.0, 1.5, 3.0):
    maps = 7 * blurred(mask, sigma) - 2  # scale and offset do not count
    width, r2 = blur_fit(maps, mask, np.arange(0, 6.01, 0.5))
    assert width == sigma and r2 == pytest.approx(1.0)
  assert blur_fit(-blurred(mask, 2.0), mask, [0.0, 2.0])[1] == 0  # an inverted map resembles no blur
  fits = blur_fits([blurred(mask, 1.5), 3 * blurred(mask, 4.0), -blurred(mask, 1.0)], mask, np.arange(0, 6.01, 0.5))
  assert [w for w, _ in fits[:2]] == [1.5, 4.0] and fits[2][1] == 0  # several maps at once, each its own fit


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5, 7.0, 20.0])  # up to a kernel wider than the image
def test_blurred_is_scipys_gaussian_filter_with_zeros_outside(sigma):
  from scipy import ndimage
  masks = np.random.default_rng(0).random((3, 11, 17)) < 0.3
  expected = ndimage.gaussian_filter(masks.astype(np.float64), (0, sigma, sigma), mode="constant")
  np.testing.assert_allclose(blurred(masks, sigma), expected, rtol=1e-12, atol=1e-15)


def test_passive_overlap_is_the_mask_correlated_with_the_field_about_its_unit():
  """A one-pixel object and a field that weighs the pixel one right of the unit: the object shows up at
  the unit one left of it. A uniform 3x3 field gives each unit the share of its 3x3 window on the object."""
  field = np.zeros((7, 7))
  field[3, 4] = 1.0
  out = passive_overlap(square_mask(7, 2, 2, 1), field, (3, 3))
  assert out[0, 2, 1] == 1 and out.sum() == 1
  box = np.zeros((8, 8))
  box[2:5, 2:5] = 1 / 9  # centred on (3, 3) of an even-sized field
  out = passive_overlap(square_mask(8, 3, 3, 2), box, (3, 3))
  np.testing.assert_allclose(out[0, 2:6, 2:6], np.array([[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]) / 9)


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
