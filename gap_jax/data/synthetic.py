"""A small procedural dataset: each class is one random binary motif placed at a random position on noise.

A translation-invariant conv net with any global pooling head can solve it, so a short training run
must reach well above chance: the tests' "run that must learn". Generated in memory from a seed.
"""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError


def make_split(num: int, image_size: int, num_classes: int, motif_size: int, motifs: np.ndarray,
               rng: np.random.Generator, channels: int = 1) -> Split:
  """Noise in every channel, the class's motif drawn into all of them. One channel draws exactly what the
  dataset drew before it had channels."""
  labels = rng.integers(0, num_classes, num).astype(np.int32)
  images = rng.integers(0, 64, (num, image_size, image_size, channels)).astype(np.uint8)
  ys, xs = rng.integers(0, image_size - motif_size + 1, (2, num))
  for i in range(num):
    patch = images[i, ys[i]:ys[i] + motif_size, xs[i]:xs[i] + motif_size]
    np.maximum(patch, motifs[labels[i]][..., None], out=patch)
  return Split(images, labels)


def load(config) -> tuple[Split, Split, int]:
  c = config.synthetic
  if c.motif_size > c.image_size:
    raise UserError(f"synthetic.image_size={c.image_size} is smaller than its motif ({c.motif_size} px): "
                    "raise --config.synthetic.image_size or lower --config.synthetic.motif_size")
  rng = np.random.default_rng(c.seed)
  motifs = (rng.random((c.num_classes, c.motif_size, c.motif_size)) < 0.5).astype(np.uint8) * 255
  train = make_split(c.num_train, c.image_size, c.num_classes, c.motif_size, motifs, rng, c.channels)
  test = make_split(c.num_test, c.image_size, c.num_classes, c.motif_size, motifs, rng, c.channels)
  return train, test, c.num_classes
