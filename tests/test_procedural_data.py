import numpy as np
import pytest

from gap_jax.data import arrangement, shapes
from gap_jax.errors import UserError


def test_arrangement_classes_have_identical_motif_mass_and_differ_only_in_layout():
  images, labels, masks, boxes = arrangement.generate(300, seed=0, noise=0)
  assert set(np.unique(labels)) == {0, 1, 2}
  # five identical motifs per image: the same number of lit pixels and the same intensity everywhere
  assert np.all(masks.sum((1, 2)) == 5 * 3 * 3)
  assert np.all(images[..., 0][masks] == 220) and np.all(images[..., 0][~masks] == 0)
  per_class = [images[labels == k].mean() for k in range(3)]
  assert max(per_class) - min(per_class) < 1e-9


def test_arrangement_layouts_are_the_bar_over_pair_its_turn_and_x():
  images, labels, masks, boxes = arrangement.generate(60, seed=1, jitter=0, noise=0, cell=6, motif=3)
  bar_over_pair = {(0, 0), (0, 1), (0, 2), (2, 0), (2, 1)}  # written out, not read from the module
  expected = [bar_over_pair, {(2 - r, 2 - c) for r, c in bar_over_pair}, {(0, 0), (0, 2), (1, 1), (2, 0), (2, 2)}]
  for m, label, box in zip(masks, labels, boxes):
    y0, x0 = box[:2]  # every layout has a motif in the grid's top row and in its left column
    lit = {(r, c) for r in range(3) for c in range(3) if m[y0 + 6 * r + 1, x0 + 6 * c + 1]}
    assert lit == expected[label]
  assert set(labels) == {0, 1, 2}


def autocorrelation(mask: np.ndarray) -> np.ndarray:
  """Every offset's count of lit pixel pairs, directly (scipy's 2-D correlation, not an FFT)."""
  from scipy import signal
  m = mask.astype(np.int64)
  return signal.correlate2d(m, m, mode="full")


def test_a_layout_and_its_turn_have_one_autocorrelation_and_the_control_another():
  """Pair statistics cannot tell class 0 from class 1 (each other's 180-degree turn); they do tell x, and
  they would tell a layout from its mirror image (which is why the turn, not the mirror, is the pair)."""
  _, labels, masks, _ = arrangement.generate(30, seed=2, jitter=0, noise=0, cell=7, motif=2)
  layout = {k: masks[labels == k][0] for k in range(3)}
  a0, a1, a2 = (autocorrelation(layout[k]) for k in range(3))
  np.testing.assert_array_equal(a0, a1)
  assert not np.array_equal(a0, a2)
  assert not np.array_equal(a0, autocorrelation(layout[0][:, ::-1]))  # the mirror image
  # the same with the motifs jittered: a class 0 image and its turn (what class 1 is distributed as)
  _, labels, masks, _ = arrangement.generate(20, seed=3, jitter=1, noise=0, cell=7, motif=2)
  jittered = masks[labels == 0][0]
  np.testing.assert_array_equal(autocorrelation(jittered), autocorrelation(jittered[::-1, ::-1]))


def test_arrangement_fields_are_what_the_rendered_layouts_take():
  """extent: the largest side a rendered layout takes; blind_field: the smallest distance between the nearest
  pixels of two motifs two cells apart; pair_field: the largest side two neighbours take."""
  cell, motif, jitter = 7, 2, 1
  _, labels, masks, boxes = arrangement.generate(600, seed=4, cell=cell, motif=motif, jitter=jitter, noise=0)
  sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
  assert sides.max() == arrangement.extent(cell, motif, jitter)
  gaps, pairs = [], []
  for m in masks[labels == 0]:
    # the bar's first and last motifs (top row, two cells apart) and its first two (neighbours)
    ys, xs = np.nonzero(m)
    top = ys < ys.min() + cell - 2 * jitter
    row_xs = np.sort(np.unique(xs[top]))
    runs = np.split(row_xs, np.nonzero(np.diff(row_xs) > 1)[0] + 1)
    gaps.append(runs[2].min() - runs[0].max())
    pairs.append(runs[1].max() - runs[0].min() + 1)
  assert min(gaps) == arrangement.blind_field(cell, motif, jitter)  # a field of s px spans s - 1
  assert max(pairs) == arrangement.pair_field(cell, motif, jitter)


def test_arrangement_too_large_for_the_image_or_overlapping_is_refused():
  with pytest.raises(UserError, match="more than the image"):
    arrangement.generate(4, seed=0, image_size=16, cell=8)
  with pytest.raises(UserError, match="overlap"):
    arrangement.generate(4, seed=0, cell=4, motif=3, jitter=1)


def test_shapes_masks_lie_inside_their_boxes_and_are_seeded():
  a = shapes.generate(40, seed=3)
  b = shapes.generate(40, seed=3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  images, labels, masks, boxes = a
  for m, bs in zip(masks, boxes):
    inside = np.zeros_like(m)
    for y0, x0, y1, x1 in bs[bs[:, 0] >= 0]:
      inside[y0:y1, x0:x1] = True
      assert m[y0:y1, x0:x1].any()
    assert not (m & ~inside).any()
  assert set(np.unique(labels)) == set(range(len(shapes.CLASS_NAMES)))


def test_shapes_with_equal_area_leave_no_area_cue():
  """By default a square covers about 2.5x a cross's pixels at the same drawn side, so the image mean alone
  classifies; with equal_area every class covers within 20% of side^2 pixels at every side (within 2% on
  average over the sides drawn), and the image mean is near chance."""
  from experiments.shortcuts import gaussian_accuracy
  sides = range(7, 15)  # generate()'s default min_size..max_size
  for k in range(len(shapes.CLASS_NAMES)):
    area = np.array([shapes._shape_mask(k, shapes._equal_area_size(k, side, 32)).sum() for side in sides])
    squares = np.array(sides) ** 2
    assert np.all(np.abs(area / squares - 1) < 0.2) and abs(area.mean() / squares.mean() - 1) < 0.02
  for equal_area in (False, True):
    images, labels, _, _ = shapes.generate(1200, 0, max_objects=1, equal_area=equal_area)
    mean = images.reshape(len(images), -1).mean(1)
    accuracy = gaussian_accuracy(mean[:800], labels[:800], mean[800:], labels[800:])
    assert (accuracy < 0.32) == equal_area, accuracy  # chance: 0.25
