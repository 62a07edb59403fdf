"""`arrangement`: classes that differ only in how identical motifs are arranged, built so that counts of
motif pairs cannot tell the two main classes apart.

Every image holds exactly five copies of one motif on a 3 x 3 grid of cells (spacing `cell` pixels):

- class 0, "bar_over_pair": a bar of three along the top row, a pair at the left of the bottom row;
- class 1, "turned": class 0 turned by 180 degrees (pair at the right of the top row, bar along the bottom);
- class 2, "x": the corners and the centre, the control: it differs from both in its pair statistics.

An image's autocorrelation equals that of its 180-degree turn (a pair at offset d becomes one at -d), and the
jitter and noise below are symmetric, so class 1 is distributed as class 0 turned: any statistic of pairs of
pixels has one distribution in both, and its Bayes accuracy between them is 0.5. (A mirror image would not
do: the autocorrelation of a layout and of its mirror differ in general.) Class 2 has no two motifs side by
side and four diagonal neighbours, so pair counts separate it from both.

Classes 0 and 1 are made of pieces (the bar, the pair) that are each their own 180-degree turn and lie two
cells apart, so a window that cannot touch two motifs two cells apart (`blind_field`) sees one piece at a
time, the same pieces in both classes: without noise the multiset of such windows has one distribution in
both classes, so global average pooling over units with such a field cannot do better than chance. Only a
unit that reaches across the layout sees on which side the pair lies; `extent` is the smallest square that
always holds the whole layout. Between the two, a unit sees parts of both pieces in some images.

Same motif, same count, no overlap: every class has the same mean intensity. The layout lands at a random
offset (position jitter of the whole), each motif moves by up to `jitter` pixels, and uniform noise below
half the range covers the image (so no noise pixel counts as bright for the pair statistics).
"""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

BAR_OVER_PAIR_CELLS = ((0, 0), (0, 1), (0, 2), (2, 0), (2, 1))
TURNED_CELLS = tuple(sorted((2 - r, 2 - c) for r, c in BAR_OVER_PAIR_CELLS))
X_CELLS = ((0, 0), (0, 2), (1, 1), (2, 0), (2, 2))
LAYOUTS = (BAR_OVER_PAIR_CELLS, TURNED_CELLS, X_CELLS)
CLASS_NAMES = ("bar_over_pair", "turned", "x")
ROTATION_PAIR, CONTROL = (0, 1), 2  # the classes pair statistics cannot tell apart, and the one they can


def extent(cell: int, motif: int, jitter: int) -> int:
  """Side in pixels of the smallest square that always contains the whole layout."""
  return 2 * cell + motif + 2 * jitter


def blind_field(cell: int, motif: int, jitter: int) -> int:
  """The largest field (px) that never touches two motifs two cells apart in a row or column: their nearest
  pixels lie at least 2 * cell - motif - 2 * jitter + 1 rows (or columns) apart, and a field of s px spans
  s - 1."""
  return 2 * cell - motif - 2 * jitter + 1


def pair_field(cell: int, motif: int, jitter: int) -> int:
  """The smallest field (px) that always contains two neighbouring motifs whole (side by side or diagonal)."""
  return cell + motif + 2 * jitter


def generate(num: int, seed: int, image_size: int = 32, cell: int = 6, motif: int = 3, jitter: int = 1,
             noise: int = 48, intensity: int = 220):
  """(images (N, S, S, 1) uint8, labels (N,), masks (N, S, S) bool, boxes (N, 4) as y0, x0, y1, x1)."""
  span = extent(cell, motif, jitter)
  if span > image_size:
    raise UserError(f"an arrangement of cell {cell}, motif {motif}, jitter {jitter} spans {span} px, "
                    f"more than the image ({image_size} px): lower arrangement.cell or raise image_size")
  if cell < motif + 2 * jitter:
    raise UserError(f"arrangement cell {cell} lets jittered motifs of {motif} px (jitter {jitter}) overlap, "
                    f"which changes the image mean: raise arrangement.cell to {motif + 2 * jitter} or more")
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, len(CLASS_NAMES), num).astype(np.int32)
  images = rng.integers(0, noise + 1, (num, image_size, image_size)).astype(np.uint8)
  masks = np.zeros((num, image_size, image_size), bool)
  boxes = np.zeros((num, 4), np.int32)
  for i, label in enumerate(labels):
    oy, ox = rng.integers(0, image_size - span + 1, 2) + jitter
    for r, c in LAYOUTS[label]:
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
