"""`position`: the class is where one identical patch sits (Kayhan & van Gemert, CVPR 2020).

Every image is uniform noise with the same bright patch in it: class 0 ("top_left") has it in the top-left
quadrant, centred there up to `jitter` pixels, class 1 ("bottom_right") in the bottom-right one. Images come
in pairs: each bottom-right image is its top-left partner rolled by half the image on both axes (a circular
shift, noise included), and the pairs are shuffled. So the classes hold the same pixels, the same image mean
and the same histogram, image by image; only position tells them apart. A network that is exactly
equivariant to circular shifts before a global pool (circular padding) gives a pair the same output, so it
is right on exactly one image of each pair: accuracy 0.5 on either split.

The pixels d between the patch and its corner's two borders are margin + an offset drawn uniformly from
-jitter..jitter per axis in class 0, and margin - that offset in its class-1 partner: the same distribution in
both classes. A unit sees the patch and the border's padding at once when its field spans d + 2 px:
`border_reach` gives that field for the nearest and the farthest patch.
"""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

CLASS_NAMES = ("top_left", "bottom_right")
# A config's `position` section: the data's size, layout and seed (the test split draws from seed + 1).
DEFAULTS = {"num_train": 4096, "num_test": 1024, "image_size": 24, "patch": 4, "jitter": 2, "noise": 96, "seed": 0}
PATTERN_SEED = 0  # the patch's pixels: one fixed pattern for every image, split and seed
NOISE_FLOOR_OF_PATCH = 160  # every patch pixel is brighter than any noise (noise <= 127: not "bright")


def patch_pattern(side: int) -> np.ndarray:
  """The (side, side) uint8 patch: a bright random texture, drawn once from a fixed seed."""
  return np.random.default_rng(PATTERN_SEED).integers(NOISE_FLOOR_OF_PATCH, 256, (side, side)).astype(np.uint8)


def margin(image_size: int, patch: int, jitter: int) -> int:
  """Pixels between the patch and its corner's borders when the offset is 0; UserError for a layout that
  is not the same in both classes or does not fit its quadrant."""
  if image_size % 2:
    raise UserError(f"position.image_size={image_size} must be even, so that half the image is a whole shift")
  free = image_size // 2 - patch
  if free < 0 or free % 2:
    raise UserError(f"position: image_size / 2 - patch = {free} must be even and >= 0, so the patch sits "
                    "equally far from its borders in both classes: change position.patch by 1")
  if not 0 <= jitter <= free // 2:
    raise UserError(f"position.jitter={jitter} must lie in 0..{free // 2}, or the patch leaves its quadrant")
  return free // 2


def border_reach(image_size: int, patch: int, jitter: int) -> tuple[int, int]:
  """The receptive fields (px) at which a unit first sees the padding and the patch together: for the
  patch nearest its border and for the farthest."""
  m = margin(image_size, patch, jitter)
  return m - jitter + 2, m + jitter + 2


def roll_half(images_NHW) -> np.ndarray:
  """Each image rolled by half its height and width (a circular shift): top-left to bottom-right."""
  h, w = images_NHW.shape[1:3]
  return np.roll(images_NHW, (h // 2, w // 2), axis=(1, 2))


def generate(num: int, seed: int, image_size: int = DEFAULTS["image_size"], patch: int = DEFAULTS["patch"],
             jitter: int = DEFAULTS["jitter"], noise: int = DEFAULTS["noise"]):
  """(images (N, S, S, 1) uint8, labels (N,), masks (N, S, S) bool, boxes (N, 4) as y0, x0, y1, x1)."""
  if num % 2:
    raise UserError(f"position: {num} images cannot be whole pairs (each top-left image has its bottom-right "
                    "circular shift): make position.num_train and num_test even")
  if not 0 <= noise <= 127:
    raise UserError(f"position.noise={noise} must lie in 0..127, so that no noise pixel is as bright as the patch")
  m = margin(image_size, patch, jitter)
  rng = np.random.default_rng(seed)
  half, pairs = image_size // 2, num // 2
  top_left = rng.integers(0, noise + 1, (pairs, image_size, image_size)).astype(np.uint8)
  corners = m + rng.integers(-jitter, jitter + 1, (pairs, 2))
  masks = np.zeros(top_left.shape, bool)
  pattern = patch_pattern(patch)
  for image, mask, (y, x) in zip(top_left, masks, corners):
    image[y:y + patch, x:x + patch] = pattern
    mask[y:y + patch, x:x + patch] = True
  top_left_boxes = np.concatenate([corners, corners + patch], axis=1)
  boxes = np.concatenate([top_left_boxes, top_left_boxes + half]).astype(np.int32)
  images = np.concatenate([top_left, roll_half(top_left)])
  masks = np.concatenate([masks, roll_half(masks)])
  labels = np.repeat(np.arange(2, dtype=np.int32), pairs)
  order = rng.permutation(num)
  return images[order, ..., None], labels[order], masks[order], boxes[order]


def config_fields(section) -> dict:
  """generate()'s keyword arguments from a config's `position` section."""
  return {k: section[k] for k in ("image_size", "patch", "jitter", "noise")}


def load(config) -> tuple[Split, Split, int]:
  p = config.get("position")
  if p is None:
    raise UserError("dataset 'position' needs a `position` section in the config: "
                    "config.position = ml_collections.ConfigDict(gap_jax.data.position.DEFAULTS)")
  train = generate(p.num_train, p.seed, **config_fields(p))
  test = generate(p.num_test, p.seed + 1, **config_fields(p))
  return Split(*train[:2]), Split(*test[:2]), len(CLASS_NAMES)
