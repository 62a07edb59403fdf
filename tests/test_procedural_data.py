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
