"""Measurements the experiments share, on the present class's map of each test image: the margin maps
(present minus mean absent, which the loss determines) with their ground-truth objects, regions grown by a
receptive field, the overlap of two regions, how wide a blur of the objects' masks a map looks like, the
passive-overlap map, and a grid of example maps from finished runs."""

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from scipy import ndimage

from experiments.plots import save_figure
from gap_jax.analysis.class_maps import class_maps
from gap_jax.analysis.ground_truth import GroundTruth, ground_truth
from gap_jax.trained import load_trained


def margin_maps(maps_NHWK: np.ndarray, labels_N: np.ndarray) -> np.ndarray:
  """(N, H, W): each image's present class's map minus the mean of the other classes' maps. A map added to
  every class's map (which changes no softmax output) cancels; its spatial mean is the logit margin over
  the average absent class."""
  n, _, _, k = maps_NHWK.shape
  present = maps_NHWK[np.arange(n), :, :, labels_N]
  return present - (maps_NHWK.sum(-1) - present) / (k - 1)


def present_margin_maps(trained) -> tuple[np.ndarray, np.ndarray, GroundTruth]:
  """present_class_maps' triple with margin_maps in place of the raw present-class maps."""
  gt, source = ground_truth(trained.config, trained.data, "test")
  if gt is None:
    raise ValueError(source)
  logits, maps_NHWK = class_maps(trained, upsampled=True)
  labels = trained.data.test.labels
  return margin_maps(maps_NHWK, labels), logits.argmax(-1) == labels, gt


def blurred(masks_NHW: np.ndarray, sigma: float) -> np.ndarray:
  """Each mask blurred by an isotropic Gaussian of width sigma px (0: the mask), zero outside the image: scipy's
  gaussian_filter(mode="constant"), as two matrix products (a Gaussian is separable), 10x faster on these sizes."""
  masks = np.asarray(masks_NHW, np.float64)
  if sigma == 0:
    return masks
  _, h, w = masks.shape
  return gaussian_matrix(h, sigma) @ masks @ gaussian_matrix(w, sigma).T


def gaussian_matrix(n: int, sigma: float, truncate: float = 4.0) -> np.ndarray:
  """(n, n): row i is the Gaussian kernel that scipy.ndimage.gaussian_filter1d centres on pixel i (normalised over
  its radius, truncate * sigma rounded), cut at the image's edges as zero padding cuts it."""
  radius = int(truncate * sigma + 0.5)
  kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  kernel /= kernel.sum()
  offset = np.arange(n)[None, :] - np.arange(n)[:, None]  # column minus row
  return np.where(np.abs(offset) <= radius, kernel[np.clip(offset + radius, 0, 2 * radius)], 0.0)


def blur_fit(maps_NHW: np.ndarray, masks_NHW: np.ndarray, sigmas) -> tuple[float, float]:
  """(sigma, r2): of the masks blurred by each sigma, the one that explains the maps best, and how well:
  the mean over images of the squared correlation of map and blurred mask (0 where it is negative), which is
  the R^2 of fitting map = a * blurred mask + b with a >= 0, so neither a map's offset nor its scale counts."""
  return blur_fits([maps_NHW], masks_NHW, sigmas)[0]


def blur_fits(maps: list[np.ndarray], masks_NHW: np.ndarray, sigmas) -> list[tuple[float, float]]:
  """blur_fit of each of several maps of the same images, blurring each mask once per sigma for all of them."""
  centred = [np.asarray(m, np.float64).reshape(len(masks_NHW), -1) for m in maps]
  centred = [m - m.mean(1, keepdims=True) for m in centred]
  scores = np.zeros((len(maps), len(sigmas)))
  for j, sigma in enumerate(sigmas):
    b = blurred(masks_NHW, sigma).reshape(len(masks_NHW), -1)
    b = b - b.mean(1, keepdims=True)
    for i, m in enumerate(centred):
      denom = np.sqrt((m ** 2).sum(1) * (b ** 2).sum(1))
      r = np.where(denom > 0, (m * b).sum(1) / np.where(denom > 0, denom, 1), 0.0)
      scores[i, j] = float((np.maximum(r, 0) ** 2).mean())
  best = scores.argmax(1)
  return [(float(sigmas[k]), float(scores[i, k])) for i, k in enumerate(best)]


def passive_overlap(masks_NHW: np.ndarray, erf_HW: np.ndarray, centre: tuple[int, int]) -> np.ndarray:
  """What a unit whose response is its effective field's overlap with the object would map: each mask
  correlated with the field `erf_HW` (weights of input pixels relative to the unit at `centre`)."""
  h, w = erf_HW.shape
  origin = (0, centre[0] - h // 2, centre[1] - w // 2)  # ndimage centres a kernel at size // 2
  return ndimage.correlate(np.asarray(masks_NHW, np.float64), erf_HW[None], mode="constant", origin=origin)


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


def example_maps_figure(runs: dict[str, Path], path, *, num_images: int = 6,
                        grow_by: dict[str, int] | None = None) -> str:
  """One row per finished run (label -> workdir), one column per test image (the same in every row): the
  present class's margin map with the objects' outline (white) and, where given, the outline grown by a
  square of side grow_by[label] (red, dashed)."""
  fig = Figure(figsize=(1.6 * num_images, 1.7 * len(runs)), layout="constrained")
  axes = fig.subplots(len(runs), num_images, squeeze=False)
  for row, (label, workdir) in zip(axes, runs.items()):
    maps, correct, gt = present_margin_maps(load_trained(workdir))
    masks = gt.masks_NHW[:num_images]
    grown = dilate(masks, grow_by[label]) if grow_by else None
    for i, ax in enumerate(row):
      ax.imshow(maps[i], cmap="viridis")
      ax.contour(masks[i], [0.5], colors="white", linewidths=1)
      if grown is not None:
        ax.contour(grown[i], [0.5], colors="red", linewidths=1, linestyles="dashed")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(("" if correct[i] else "wrong, ") + f"[{maps[i].min():.0f}, {maps[i].max():.0f}]", fontsize=7)
    row[0].set_ylabel(label, fontsize=8)
  return save_figure(fig, path, dpi=100)
