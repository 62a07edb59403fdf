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


def test_arrangement_layouts_are_x_plus_and_other():
  images, labels, masks, boxes = arrangement.generate(60, seed=1, jitter=0, noise=0, cell=6, motif=3)
  for m, label, box in zip(masks, labels, boxes):
    y0, x0 = box[:2]
    lit = {(r, c) for r in range(3) for c in range(3) if m[y0 + 6 * r + 1, x0 + 6 * c + 1]}
    x, plus = set(arrangement.X_CELLS), set(arrangement.PLUS_CELLS)
    assert len(lit) == 5
    assert (lit == x) == (label == 0) and (lit == plus) == (label == 1)


def test_arrangement_too_large_for_the_image_is_refused():
  with pytest.raises(UserError, match="more than the image"):
    arrangement.generate(4, seed=0, image_size=16, cell=8)


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
