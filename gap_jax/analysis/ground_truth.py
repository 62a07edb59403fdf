"""Ground-truth object boxes and masks for the datasets that have them, by dataset name.

- synthetic: each image holds one class motif (a motif_size square) at a random position. The data module
  does not keep the positions, so they are recovered by replaying its generator from the config's seed and
  checked against the loaded images and labels pixel for pixel: a change to the generator makes this
  return None rather than wrong boxes. The object is the whole motif square (its off pixels are part of
  the pattern), so the mask is the box.
- fashion_mnist: no annotation exists; the garments are photographed on a black background, so the
  foreground is taken as the pixels above 0 and the box as their bounding box (a proxy, said so in the
  output). Boxes cover a median 68% of the image, so the whole-image box already scores high.
- shapes, arrangement: procedural; their generate() returns masks and boxes, so the split is generated
  again from the config (the arguments and seeds their load() uses: seed for train, seed + 1 for test) and
  checked against the loaded images and labels, as for synthetic. Their boxes end one past the object
  (exclusive); here they are converted to inclusive. The mask is the union of the image's objects
  (shapes: the shape's pixels, not its box; arrangement: the five motifs), and every object has a box.
"""

import dataclasses
import functools

import numpy as np

from gap_jax.analysis.localization import mask_boxes
from gap_jax.data import arrangement, shapes


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  boxes_N4: np.ndarray  # (y0, x0, y1, x1), inclusive; (N, M, 4) where an image can hold M objects
  masks_NHW: np.ndarray  # bool
  source: str  # how they were obtained


def synthetic(config, data, split: str = "test") -> GroundTruth | None:
  """The motif squares of the synthetic dataset's `split`, replayed from gap_jax.data.synthetic."""
  if getattr(data, "eval_split", "test") != "test" and split == "test":
    return None  # data.test holds a validation split carved out of train: positions not replayed
  c = config.synthetic
  rng = np.random.default_rng(c.seed)
  motifs = (rng.random((c.num_classes, c.motif_size, c.motif_size)) < 0.5).astype(np.uint8) * 255
  for name, num in (("train", c.num_train), ("test", c.num_test)):
    labels = rng.integers(0, c.num_classes, num).astype(np.int32)
    images = rng.integers(0, 64, (num, c.image_size, c.image_size)).astype(np.uint8)
    ys, xs = rng.integers(0, c.image_size - c.motif_size + 1, (2, num))
    if name == split:
      break
  target = getattr(data, split)
  if target.images.dtype != np.uint8 or target.images.shape[1:] != (*images.shape[1:], 1):
    return None
  for i in range(num):
    patch = images[i, ys[i]:ys[i] + c.motif_size, xs[i]:xs[i] + c.motif_size]
    np.maximum(patch, motifs[labels[i]], out=patch)
  if not (np.array_equal(labels, target.labels) and np.array_equal(images, target.images[..., 0])):
    return None
  boxes = np.stack([ys, xs, ys + c.motif_size - 1, xs + c.motif_size - 1], -1)
  masks = np.zeros(images.shape, bool)
  for i in range(num):
    masks[i, ys[i]:ys[i] + c.motif_size, xs[i]:xs[i] + c.motif_size] = True
  return GroundTruth(boxes, masks, f"synthetic: the {c.motif_size}x{c.motif_size} motif square "
                                   "(replayed from the generator, verified against the images)")


def fashion_mnist(config, data, split: str = "test") -> GroundTruth | None:
  images = getattr(data, split).images[..., 0]
  if images.dtype != np.uint8:
    return None  # preprocessed images: the black background is no longer 0
  masks = images > 0
  return GroundTruth(mask_boxes(masks), masks,
                     "fashion_mnist proxy: foreground = pixels > 0 (black background), box = its extent")


def inclusive_boxes(boxes_exclusive) -> np.ndarray:
  """(y0, x0, y1, x1) boxes whose ends are one past the object, (N, 4) or (N, M, 4) with -1 rows for
  missing objects, as inclusive boxes of the same shape. A missing object's row becomes a copy of the
  image's first box, which leaves every best-over-boxes IoU unchanged."""
  exclusive = np.asarray(boxes_exclusive, np.int64)
  b = exclusive - np.array([0, 0, 1, 1])
  if b.ndim == 3:
    b = np.where(exclusive[..., :1] < 0, b[:, :1], b)
  return b


# The generate() keyword arguments each procedural dataset's load() passes from its config block.
PROCEDURAL = {"shapes": (shapes, ("image_size", "max_objects", "equal_area")),
              "arrangement": (arrangement, ("image_size", "cell", "motif", "jitter"))}


def procedural(name: str, config, data, split: str = "test") -> GroundTruth | None:
  """The objects of a procedural dataset's `split`, generated again and verified against the images."""
  if getattr(data, "eval_split", "test") != "test" and split == "test":
    return None  # data.test holds a validation split carved out of train
  module, fields = PROCEDURAL[name]
  c = config[name]
  num, seed = (c.num_train, c.seed) if split == "train" else (c.num_test, c.seed + 1)
  images, labels, masks, boxes = module.generate(num, seed, **{f: c[f] for f in fields})
  target = getattr(data, split)
  if target.images.dtype != np.uint8 or target.images.shape != images.shape:
    return None
  if not (np.array_equal(labels, target.labels) and np.array_equal(images, target.images)):
    return None
  return GroundTruth(inclusive_boxes(boxes), masks, f"{name}: the objects' pixel masks and boxes "
                                                    "(regenerated from the config, verified against the images)")


GROUND_TRUTH = {"synthetic": synthetic, "fashion_mnist": fashion_mnist,
                **{name: functools.partial(procedural, name) for name in PROCEDURAL}}


def ground_truth(config, data, split: str = "test") -> tuple[GroundTruth | None, str]:
  """(ground truth or None, a line that says where it came from or why there is none)."""
  if data.name not in GROUND_TRUTH:
    return None, f"no boxes or masks known for dataset {data.name!r}"
  gt = GROUND_TRUTH[data.name](config, data, split)
  if gt is None:
    return None, (f"no boxes: the {data.name} images of this run could not be matched to their source "
                  "(validation split, preprocessed pixels, or a changed generator)")
  return gt, gt.source
