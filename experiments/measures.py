"""Measurements the experiments share, on the present class's map of each test image: the maps with
their ground-truth objects, the active region, regions grown by a receptive field, the overlap of two
regions, and a grid of example maps from finished runs."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from gap_jax.analysis.class_maps import class_maps
from gap_jax.analysis.ground_truth import GroundTruth, ground_truth
from gap_jax.trained import load_trained


def present_class_maps(trained) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
  """(maps (N, H, W) of each test image's true class at image size, correct (N,), ground truth).
  Raises ValueError when the run's dataset has no verified ground truth."""
  gt, source = ground_truth(trained.config, trained.data, "test")
  if gt is None:
    raise ValueError(source)
  logits, maps_NHWK = class_maps(trained, upsampled=True)
  labels = trained.data.test.labels
  present_NHW = maps_NHWK[np.arange(len(labels)), :, :, labels]
  return present_NHW, logits.argmax(-1) == labels, gt


def active_region(maps_NHW: np.ndarray, tau: float) -> np.ndarray:
  """Locations where a map exceeds tau times its own maximum (map_stats' frac_above_tau region; none for
  a map that is negative everywhere)."""
  maps = np.asarray(maps_NHW)
  return maps > tau * maps.max(axis=(1, 2), keepdims=True)


def dilate(masks_NHW: np.ndarray, side: int) -> np.ndarray:
  """Each mask grown by a side x side square centred on every pixel: the locations whose square window
  (a receptive field of that side) holds at least one mask pixel. Clipped to the image."""
  if side < 1 or side % 2 == 0:
    raise ValueError(f"the square's side must be odd and positive to have a centre, got {side}")
  # A max filter over a rectangle is separable, so large squares stay cheap; size 1 on the image axis
  # keeps images from growing into each other.
  return ndimage.maximum_filter(np.asarray(masks_NHW, bool), size=(1, side, side), mode="constant", cval=False)


def region_iou(a_NHW: np.ndarray, b_NHW: np.ndarray) -> np.ndarray:
  """Intersection over union of two regions, per image (N,); 1 where both are empty."""
  a, b = np.asarray(a_NHW, bool), np.asarray(b_NHW, bool)
  inter, union = (a & b).sum((1, 2)), (a | b).sum((1, 2))
  return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def best_fit_side(region_NHW: np.ndarray, masks_NHW: np.ndarray) -> int:
  """The odd side s whose grown masks dilate(masks, s) best match the regions (highest mean IoU), from 1
  to the side that covers the whole image from any one pixel."""
  h, w = np.shape(masks_NHW)[1:]
  sides = range(1, 2 * max(h, w), 2)
  return max(sides, key=lambda s: region_iou(region_NHW, dilate(masks_NHW, s)).mean())


def example_maps_figure(runs: dict[str, Path], path, *, num_images: int = 6, tau: float | None = None,
                        grow_by: dict[str, int] | None = None) -> str:
  """One row per finished run (label -> workdir), one column per test image (the same in every row): the
  present class's map with the objects' outline (white), where given the outline grown by a square of
  side grow_by[label] (red, dashed) and the active region map > tau * max (black)."""
  fig = Figure(figsize=(1.6 * num_images, 1.7 * len(runs)), layout="constrained")
  axes = fig.subplots(len(runs), num_images, squeeze=False)
  for row, (label, workdir) in zip(axes, runs.items()):
    maps, correct, gt = present_class_maps(load_trained(workdir))
    masks = gt.masks_NHW[:num_images]
    grown = dilate(masks, grow_by[label]) if grow_by else None
    active = active_region(maps[:num_images], tau) if tau is not None else None
    for i, ax in enumerate(row):
      ax.imshow(maps[i], cmap="viridis")
      ax.contour(masks[i], [0.5], colors="white", linewidths=1)
      if grown is not None:
        ax.contour(grown[i], [0.5], colors="red", linewidths=1, linestyles="dashed")
      if active is not None and active[i].any():
        ax.contour(active[i], [0.5], colors="black", linewidths=0.8)
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(("" if correct[i] else "wrong, ") + f"[{maps[i].min():.0f}, {maps[i].max():.0f}]", fontsize=7)
    row[0].set_ylabel(label, fontsize=8)
  fig.savefig(path, dpi=100)
  return Path(path).name
