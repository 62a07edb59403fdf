"""`counterexample`: the question's own example as images, three 3x3 patterns with one mean.

"corners" lights the four corner cells (0.9 of full scale, 0.1 elsewhere), "edges" the four edge-centre
cells, "uniform" sets every cell to their common mean. Corners and edges hold the same intensities in the
same amounts (identical histograms); only their arrangement differs. Each image draws the pattern as a
3 x 3 grid of square blocks of a random side (`min_block`..`max_block` px) at a random offset on a canvas at
the dark level, then adds integer noise, uniform in [-noise, noise], to every pixel. Every class then has the
same image mean given the layout (exactly without noise, up to the noise's mean with it), and any statistic
of single pixels is blind to corners vs edges. Test and train labels are balanced (each class a third).
"""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

BRIGHT, DARK = 230, 23  # 0.90 and 0.09 of 255
MEAN = (4 * BRIGHT + 5 * DARK) // 9  # 115, exact: 4 * 230 + 5 * 23 = 9 * 115
CLASS_NAMES = ("corners", "edges", "uniform")
CORNERS, EDGES, UNIFORM = range(3)
PATTERNS = np.array([
    [[BRIGHT, DARK, BRIGHT], [DARK, DARK, DARK], [BRIGHT, DARK, BRIGHT]],
    [[DARK, BRIGHT, DARK], [BRIGHT, DARK, BRIGHT], [DARK, BRIGHT, DARK]],
    [[MEAN] * 3] * 3,
], np.uint8)  # (class, row, column)


def render(label: int, block: int, y0: int, x0: int, image_size: int) -> np.ndarray:
  """(S, S) uint8: pattern `label` as 3 x 3 blocks of side `block` from (y0, x0), on the dark canvas."""
  image = np.full((image_size, image_size), DARK, np.uint8)
  image[y0:y0 + 3 * block, x0:x0 + 3 * block] = np.kron(PATTERNS[label], np.ones((block, block), np.uint8))
  return image


def generate(num: int, seed: int, image_size: int = 24, min_block: int = 3, max_block: int = 4,
             noise: int = 16):
  """(images (N, S, S, 1) uint8, labels (N,), layouts (N, 3) as block side, y0, x0 of the pattern)."""
  if not 1 <= min_block <= max_block or 3 * max_block > image_size:
    raise UserError(f"counterexample blocks of {min_block}..{max_block} px make patterns up to "
                    f"{3 * max_block} px in a {image_size} px image: need 1 <= min_block <= max_block and "
                    "3 * max_block <= image_size")
  if not 0 <= noise <= min(DARK, 255 - BRIGHT):
    raise UserError(f"counterexample noise={noise}: use 0..{min(DARK, 255 - BRIGHT)}, so that no pixel is "
                    "clipped and every class keeps the same mean")
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(num) % len(CLASS_NAMES)).astype(np.int32)
  blocks = rng.integers(min_block, max_block + 1, num)
  offsets = (rng.random((num, 2)) * (image_size - 3 * blocks[:, None] + 1)).astype(np.int64)
  layouts = np.column_stack([blocks, offsets]).astype(np.int32)
  images = np.stack([render(k, *layout, image_size) for k, layout in zip(labels, layouts)]).astype(np.int16)
  images += rng.integers(-noise, noise + 1, images.shape, dtype=np.int16)  # drawn last: layouts stay put
  return images.astype(np.uint8)[..., None], labels, layouts


def generate_split(config, split: str):
  """generate()'s triple for a run's train or test split, as load() draws it (test: seed + 1)."""
  c = config.counterexample
  num, seed = (c.num_train, c.seed) if split == "train" else (c.num_test, c.seed + 1)
  return generate(num, seed, c.image_size, c.min_block, c.max_block, c.noise)


def load(config) -> tuple[Split, Split, int]:
  train, test = (generate_split(config, s) for s in ("train", "test"))
  return Split(*train[:2]), Split(*test[:2]), len(CLASS_NAMES)
