"""`arrangement`: classes that differ only in how identical motifs are arranged.

Every image holds exactly five copies of one motif on a 3 x 3 grid of cells (spacing `cell` pixels):
class 0 at the corners and centre ("x"), class 1 at the edge midpoints and centre ("plus"), class 2 at five
other cells drawn at random ("scattered", never x or plus). Same motif, same count: every class has the
same mean intensity, so no statistic of isolated local patches separates them; only a unit whose
receptive field spans the arrangement (2 * cell + motif pixels) sees the class. The grid lands at a random
offset (position jitter), each motif moves by up to `jitter` pixels, and uniform noise covers the image.
"""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

X_CELLS = ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2))
PLUS_CELLS = ((0, 1), (1, 0), (1, 1), (1, 2), (2, 1))
CLASS_NAMES = ("x", "plus", "scattered")
ALL_CELLS = tuple((r, c) for r in range(3) for c in range(3))


def extent(cell: int, motif: int, jitter: int) -> int:
  """Side in pixels of the square the arrangement can occupy."""
  return 2 * cell + motif + 2 * jitter


def _cells(label: int, rng: np.random.Generator):
  if label == 0:
    return X_CELLS
  if label == 1:
    return PLUS_CELLS
  while True:
    pick = tuple(sorted(ALL_CELLS[i] for i in rng.choice(9, 5, replace=False)))
    if pick not in (tuple(sorted(X_CELLS)), tuple(sorted(PLUS_CELLS))):
      return pick


def generate(num: int, seed: int, image_size: int = 32, cell: int = 6, motif: int = 3, jitter: int = 1,
             noise: int = 48, intensity: int = 220):
  """(images (N, S, S, 1) uint8, labels (N,), masks (N, S, S) bool, boxes (N, 4) as y0, x0, y1, x1)."""
  span = extent(cell, motif, jitter)
  if span > image_size:
    raise UserError(f"an arrangement of cell {cell}, motif {motif}, jitter {jitter} spans {span} px, "
                     f"more than the image ({image_size} px): lower arrangement.cell or raise image_size")
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(CLASS_NAMES), num).astype(np.int32)
  images = rng.integers(0, noise + 1, (num, image_size, image_size)).astype(np.uint8)
  masks = np.zeros((num, image_size, image_size), bool)
  boxes = np.zeros((num, 4), np.int32)
  for i, label in enumerate(labels):
    oy, ox = rng.integers(0, image_size - span + 1, 2) + jitter
    for r, c in _cells(int(label), rng):
      dy, dx = rng.integers(-jitter, jitter + 1, 2)
      y, x = oy + r * cell + dy, ox + c * cell + dx
      images[i, y:y + motif, x:x + motif] = intensity
      masks[i, y:y + motif, x:x + motif] = True
    ys, xs = np.nonzero(masks[i])
    boxes[i] = ys.min(), xs.min(), ys.max() + 1, xs.max() + 1
  return images[..., None], labels, masks, boxes


def load(config) -> tuple[Split, Split, int]:
  a = config.arrangement
  kwargs = dict(image_size=a.image_size, cell=a.cell, motif=a.motif, jitter=a.jitter)
  train = generate(a.num_train, a.seed, **kwargs)
  test = generate(a.num_test, a.seed + 1, **kwargs)
  return Split(*train[:2]), Split(*test[:2]), len(CLASS_NAMES)
