"""Figures as PNG files, drawn on matplotlib `Figure` objects (the Agg canvas, no pyplot state):
- class_map_grid: input images with the map of every class beside them, present class framed (NiN fig. 4);
- erf_heatmaps: effective receptive fields with the analytic field and the mass square drawn on;
- metric_curves: a metric against a parameter, mean and std over seeds (or any repeated measurement).
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

PRESENT_COLOUR = "tab:red"
MAX_COLUMNS = 16  # above this many classes a row shows the present class and the best-scoring others


def _save(fig: Figure, path) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=100, bbox_inches="tight")
  return path


def _displayable(image_HWC: np.ndarray) -> np.ndarray:
  """uint8 pixels, or preprocessed float images (GCN+ZCA, LCN) min-max scaled, as [0, 1] floats."""
  x = np.asarray(image_HWC, np.float64)
  if image_HWC.dtype == np.uint8:
    return x / 255.0
  span = x.max() - x.min()
  return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def class_map_grid(images_NHWC: np.ndarray, maps_NHWK: np.ndarray, labels_N: np.ndarray, path,
                   *, logits_NK: np.ndarray | None = None, class_names: Sequence[str] | None = None,
                   title: str | None = None) -> Path:
  """One row per image: the image, then its class maps (upsampled to the image or not: each is drawn
  over the image's extent), one colour scale per row from 0 (or the row's minimum, if negative) to the
  row's maximum, so weak maps look weak. The present class is framed and starred."""
  n, k = len(images_NHWC), maps_NHWK.shape[-1]
  names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
  cols = k if k <= MAX_COLUMNS else MAX_COLUMNS
  fig = Figure(figsize=(1.1 * (cols + 1), 1.15 * n + (0.4 if title else 0)))
  axes = fig.subplots(n, cols + 1, squeeze=False)
  h, w = images_NHWC.shape[1:3]
  for i in range(n):
    image = _displayable(images_NHWC[i])
    axes[i, 0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
    axes[i, 0].set_title(f"true: {names[labels_N[i]]}", fontsize=7)
    classes = list(range(k))
    if k > MAX_COLUMNS:  # the present class first, then the highest logits
      score = logits_NK[i] if logits_NK is not None else maps_NHWK[i].mean((0, 1))
      others = [c for c in np.argsort(-score) if c != labels_N[i]]
      classes = [int(labels_N[i])] + [int(c) for c in others[:cols - 1]]
    row = maps_NHWK[i][..., classes]
    vmin, vmax = min(float(row.min()), 0.0), float(row.max())
    vmax = vmax if vmax > vmin else vmin + 1.0
    for j, c in enumerate(classes):
      ax = axes[i, j + 1]
      ax.imshow(row[..., j], cmap="viridis", vmin=vmin, vmax=vmax, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
      present = c == labels_N[i]
      ax.set_title(("* " if present else "") + names[c], fontsize=7,
                   color=PRESENT_COLOUR if present else "black")
      if present:
        for spine in ax.spines.values():
          spine.set_edgecolor(PRESENT_COLOUR), spine.set_linewidth(2.5)
  for ax in axes.ravel():
    ax.set_xticks([]), ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def erf_heatmaps(erfs_HW: Mapping[str, np.ndarray], path, *, analytic: tuple[float, float, int] | None = None,
                 squares: Mapping[str, tuple[float, float, int | None]] | None = None) -> Path:
  """One panel per effective receptive field (name -> map). `analytic` = (centre y, centre x, size)
  draws the analytic field (dashed, white); `squares[name]` the square holding the stated mass (solid)."""
  names = list(erfs_HW)
  fig = Figure(figsize=(3.6 * len(names), 3.2), layout="constrained")
  axes = fig.subplots(1, len(names), squeeze=False)[0]
  for ax, name in zip(axes, names):
    erf = erfs_HW[name]
    im = ax.imshow(erf, cmap="inferno")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(name, fontsize=9)
    if analytic is not None:
      cy, cx, r = analytic
      ax.add_patch(Rectangle((cx - r / 2, cy - r / 2), r, r, fill=False, ls="--", ec="white", lw=1.2,
                             label=f"analytic {r} px"))
    if squares and squares.get(name) and squares[name][2]:
      cy, cx, s = squares[name]
      ax.add_patch(Rectangle((cx - s / 2, cy - s / 2), s, s, fill=False, ec="cyan", lw=1.2,
                             label=f"mass square {s} px"))
    ax.set_xlim(-0.5, erf.shape[1] - 0.5), ax.set_ylim(erf.shape[0] - 0.5, -0.5)
    if ax.patches:
      ax.legend(loc="lower right", fontsize=6)
  return _save(fig, path)


def metric_curves(x_X: Sequence[float], curves: Mapping[str, np.ndarray], path, *, xlabel: str, ylabel: str,
                  xscale: str = "linear", title: str | None = None) -> Path:
  """Mean and std (error bars) over the rows of each curve's (S, X) array: S seeds, X parameter values.
  A 1-D array is one seed (no bars). NaNs are left out of the mean and std."""
  fig = Figure(figsize=(5, 3.5), layout="constrained")
  ax = fig.subplots()
  for name, values in curves.items():
    v = np.atleast_2d(np.asarray(values, np.float64))
    mean = np.nanmean(v, 0)
    std = np.nanstd(v, 0) if len(v) > 1 else None
    ax.errorbar(x_X, mean, yerr=std, marker="o", ms=3, capsize=3,
                label=name if len(v) == 1 else f"{name} (n={len(v)})")
  ax.set_xscale(xscale)
  ax.set_xlabel(xlabel), ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  if title:
    ax.set_title(title, fontsize=9)
  return _save(fig, path)
