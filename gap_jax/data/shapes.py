"""`shapes`: objects of several classes (shape types) at random positions and scales on clutter, one or
more per image (all of the image's class), with pixel masks and boxes for localization metrics.

Drawn at the same side, a square covers about twice a triangle's pixels, so by default a class's area (and
with it the image mean) tells the classes apart without any shape: 41% accuracy from the image mean alone
against 25% chance. With `equal_area` each object's size is chosen so that its mask covers as many pixels
as a square of the drawn side, whatever its class: area is then no cue, and a class is told by its shape.
"""

import functools

import numpy as np

from gap_jax.data.types import Split

CLASS_NAMES = ("square", "disk", "triangle", "cross")


def _shape_mask(kind: int, size: int) -> np.ndarray:
  """A (size, size) boolean mask of one shape."""
  yy, xx = np.mgrid[:size, :size] + 0.5
  c = size / 2
  if kind == 0:
    return np.ones((size, size), bool)
  if kind == 1:
    return (yy - c) ** 2 + (xx - c) ** 2 <= c ** 2
  if kind == 2:  # apex at the top, base at the bottom
    return np.abs(xx - c) <= yy / 2
  bar = max(size // 4, 1)
  lo = (size - bar) // 2
  mask = np.zeros((size, size), bool)
  mask[lo:lo + bar, :] = mask[:, lo:lo + bar] = True
  return mask


@functools.cache
def _equal_area_size(kind: int, side: int, limit: int) -> int:
  """The size (at most `limit`) at which shape `kind` covers the pixels closest to side * side."""
  return min(range(1, limit + 1), key=lambda size: abs(int(_shape_mask(kind, size).sum()) - side * side))


def generate(num: int, seed: int, image_size: int = 32, min_size: int = 7, max_size: int = 14,
             max_objects: int = 2, clutter: int = 6, equal_area: bool = False):
  """(images (N, S, S, 1) uint8, labels (N,), masks (N, S, S) bool, boxes (N, max_objects, 4) as
  y0, x0, y1, x1 with -1 rows where an image has fewer objects)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(CLASS_NAMES), num).astype(np.int32)
  images = rng.integers(0, 40, (num, image_size, image_size)).astype(np.uint8)
  masks = np.zeros((num, image_size, image_size), bool)
  boxes = -np.ones((num, max_objects, 4), np.int32)
  for i, label in enumerate(labels):
    for _ in range(clutter):  # short thin strokes: edges without a shape
      y, x = rng.integers(0, image_size - 4, 2)
      if rng.random() < 0.5:
        images[i, y, x:x + 4] = rng.integers(80, 160)
      else:
        images[i, y:y + 4, x] = rng.integers(80, 160)
    for k in range(rng.integers(1, max_objects + 1)):
      size = int(rng.integers(min_size, max_size + 1))
      if equal_area:
        size = _equal_area_size(int(label), size, image_size)
      y, x = rng.integers(0, image_size - size + 1, 2)
      shape = _shape_mask(int(label), size)
      patch = images[i, y:y + size, x:x + size]
      patch[shape] = rng.integers(170, 256)
      masks[i, y:y + size, x:x + size] |= shape
      ys, xs = np.nonzero(shape)
      boxes[i, k] = y + ys.min(), x + xs.min(), y + ys.max() + 1, x + xs.max() + 1
  return images[..., None], labels, masks, boxes


def load(config) -> tuple[Split, Split, int]:
  s = config.shapes
  kwargs = dict(image_size=s.image_size, max_objects=s.max_objects, equal_area=s.equal_area)
  train = generate(s.num_train, s.seed, **kwargs)
  test = generate(s.num_test, s.seed + 1, **kwargs)
  return Split(*train[:2]), Split(*test[:2]), len(CLASS_NAMES)
