"""Weakly supervised localization scores of class maps against ground-truth boxes and masks.

Choe et al., "Evaluating Weakly Supervised Object Localization Methods Right" (CVPR 2020), on maps already
upsampled to the image size and min-max normalised to [0, 1] per map, over their threshold grid
tau in {0, 0.01, ..., 0.99}:
- BoxAcc(tau, delta): share of images where the box around the largest connected component of
  {map >= tau} has IoU >= delta with a ground-truth box (the best one when an image has several).
  MaxBoxAcc = max over tau of BoxAcc(tau, 0.5). MaxBoxAccV2 = mean over delta in {0.3, 0.5, 0.7} of
  max over tau of BoxAcc(tau, delta), where each image's box is the best of all components' boxes.
- PxAP: area under the pixel precision-recall curve, pixels of the whole set pooled, as their
  MaskEvaluator computes it: 100 * sum_i P_i (R_i - R_{i-1}) over thresholds in descending order.
- CAM (Zhou et al. CVPR 2016): the box around the largest component of {map >= 0.2 * max(map)} of the
  raw (unnormalised) map.
- Their fixed protocol (fixed_protocol_scores): the map threshold of each IoU is chosen where BoxAcc is best
  on a held-out split with boxes ("train-fullsup"), and the test split is scored at that threshold, never at
  its own best one. localization_scores chooses on the split it scores (an upper bound: what the analyze
  command reports of one split).

Boxes are (y0, x0, y1, x1) with both ends inclusive; IoU counts pixels. Components are 8-connected sets of
pixels, found for all thresholds in one union-find pass per map (numpy, vectorised over maps); "largest"
means most pixels (ties: the one whose root pixel comes first).
Their reference code differs in small ways: it thresholds a uint8 copy with '>' (cv2.threshold), ranks
contours by polygon area (cv2.contourArea) and counts hole contours as components in V2.
"""

import numpy as np

THRESHOLDS = np.arange(100) / 100  # Choe et al.'s np.arange(0, 1, cam_curve_interval = 0.01)
IOU_THRESHOLDS_V2 = (0.3, 0.5, 0.7)
CAM_FRACTION = 0.2


def minmax_normalize(maps_NHW: np.ndarray) -> np.ndarray:
  """(x - min) / (max - min) per map; a constant map becomes all zeros."""
  x = np.asarray(maps_NHW, np.float64)
  lo = x.min(axis=(1, 2), keepdims=True)
  span = x.max(axis=(1, 2), keepdims=True) - lo
  return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1), 0.0)


def box_iou(a_X4: np.ndarray, b_X4: np.ndarray) -> np.ndarray:
  """IoU of inclusive pixel boxes (y0, x0, y1, x1), broadcasting over leading axes."""
  ih = np.minimum(a_X4[..., 2], b_X4[..., 2]) - np.maximum(a_X4[..., 0], b_X4[..., 0]) + 1
  iw = np.minimum(a_X4[..., 3], b_X4[..., 3]) - np.maximum(a_X4[..., 1], b_X4[..., 1]) + 1
  inter = np.maximum(ih, 0) * np.maximum(iw, 0)
  area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)
  return inter / (area(a_X4) + area(b_X4) - inter)


def _as_gt(boxes) -> np.ndarray:
  gt = np.asarray(boxes, np.int64)
  return gt[:, None, :] if gt.ndim == 2 else gt  # (N, 4) -> (N, 1, 4)


class _Forest:
  """Union-find over the pixels of N maps at once (union by size), each root holding its component's
  pixel count and box."""

  def __init__(self, n: int, h: int, w: int):
    self.rows = np.arange(n)
    self.parent = np.tile(np.arange(h * w), (n, 1))
    self.size = np.zeros((n, h * w), np.int64)
    ys, xs = np.divmod(np.arange(h * w), w)
    self.box = np.tile(np.stack([ys, xs, ys, xs], -1), (n, 1, 1))  # (N, HW, 4)

  def find(self, x_N: np.ndarray) -> np.ndarray:
    while True:  # union by size keeps trees at most log2(H * W) deep
      up = self.parent[self.rows, x_N]
      if (up == x_N).all():
        return x_N
      x_N = up

  def union(self, a_N: np.ndarray, b_N: np.ndarray, ok_N: np.ndarray) -> None:
    ra, rb = self.find(a_N), self.find(b_N)
    ok = ok_N & (ra != rb)
    rows, ra, rb = self.rows[ok], ra[ok], rb[ok]
    big = np.where(self.size[rows, ra] >= self.size[rows, rb], ra, rb)
    small = np.where(big == ra, rb, ra)
    self.parent[rows, small] = big
    self.size[rows, big] += self.size[rows, small]
    bb, sb = self.box[rows, big], self.box[rows, small]
    self.box[rows, big] = np.concatenate([np.minimum(bb[:, :2], sb[:, :2]),
                                          np.maximum(bb[:, 2:], sb[:, 2:])], -1)


def superlevel_components(maps_NHW: np.ndarray, thresholds, gt_boxes=None):
  """For every map and threshold tau, the components (8-connected) of {map >= tau}: returns the box of
  the largest one (N, T, 4; -1 where the set is empty), the IoU of that box with the best ground-truth
  box (N, T) and the best IoU over all components' boxes (N, T) (both None without `gt_boxes`).

  One pass per map: pixels join a union-find forest in descending order of value, so each threshold's
  components are read off when the last pixel >= tau has joined. `thresholds` is (T,) or per map (N, T).
  """
  maps = np.asarray(maps_NHW, np.float64)
  n, h, w = maps.shape
  taus = np.broadcast_to(np.asarray(thresholds, np.float64), (n, np.shape(thresholds)[-1]))
  flat = maps.reshape(n, -1)
  order = np.argsort(-flat, axis=1, kind="stable")
  # Snapshot step of (map, threshold): index in `order` of the last pixel >= tau (-1: empty set).
  snap_NT = np.stack([(flat >= taus[:, j:j + 1]).sum(1) for j in range(taus.shape[1])], 1) - 1
  gt = None if gt_boxes is None else _as_gt(gt_boxes)
  largest = np.full((n, taus.shape[1], 4), -1, np.int64)
  iou_largest = None if gt is None else np.zeros(taus.shape)
  iou_best = None if gt is None else np.zeros(taus.shape)
  pairs = np.argsort(snap_NT.ravel(), kind="stable")
  bounds = np.searchsorted(snap_NT.ravel()[pairs], np.arange(h * w + 1))
  forest = _Forest(n, h, w)
  slots = np.arange(h * w)
  for r in range(int(snap_NT.max()) + 1):  # pixels below every threshold never matter
    p = order[:, r]
    forest.size[forest.rows, p] = 1
    py, px = np.divmod(p, w)
    for dy, dx in ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)):
      qy, qx = py + dy, px + dx
      inside = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
      q = np.where(inside, qy * w + qx, p)
      forest.union(p, q, inside & (forest.size[forest.rows, q] > 0))
    if bounds[r] == bounds[r + 1]:
      continue
    ii, jj = np.divmod(pairs[bounds[r]:bounds[r + 1]], taus.shape[1])
    imgs, where = np.unique(ii, return_inverse=True)
    is_root = (forest.parent[imgs] == slots) & (forest.size[imgs] > 0)  # (m, HW)
    sizes = np.where(is_root, forest.size[imgs], 0)
    top = forest.box[imgs, sizes.argmax(1)]  # (m, 4)
    largest[ii, jj] = top[where]
    if gt is None:
      continue
    iou_largest[ii, jj] = box_iou(top[:, None], gt[imgs]).max(-1)[where]
    m_idx, root = np.nonzero(is_root)
    iou = box_iou(forest.box[imgs[m_idx], root][:, None], gt[imgs[m_idx]]).max(-1)
    best = np.zeros(len(imgs))
    np.maximum.at(best, m_idx, iou)
    iou_best[ii, jj] = best[where]
  return largest, iou_largest, iou_best


def threshold_ious(maps01_NHW: np.ndarray, gt_boxes, thresholds=THRESHOLDS,
                   chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
  """IoU (N, T) at every threshold of the largest component's box and of the best component's box."""
  out = [superlevel_components(maps01_NHW[i:i + chunk], thresholds, _as_gt(gt_boxes)[i:i + chunk])[1:]
         for i in range(0, len(maps01_NHW), chunk)]
  return np.concatenate([o[0] for o in out]), np.concatenate([o[1] for o in out])


def max_box_acc(iou_NT: np.ndarray, delta: float = 0.5) -> tuple[float, int, np.ndarray]:
  """(MaxBoxAcc in %, index of the best threshold, BoxAcc in % at every threshold)."""
  curve = 100 * (iou_NT >= delta).mean(0)
  best = int(np.argmax(curve))
  return float(curve[best]), best, curve


def pxap(maps01_NHW: np.ndarray, masks_NHW: np.ndarray,
         thresholds=THRESHOLDS) -> tuple[float, np.ndarray, np.ndarray]:
  """(PxAP in %, precision, recall) with pixels of all images pooled; thresholds in descending order."""
  maps, masks = np.asarray(maps01_NHW), np.asarray(masks_NHW, bool)
  edges = np.append(np.asarray(thresholds), [1.0, 2.0, 3.0])
  tp = np.histogram(maps[masks], bins=edges)[0][::-1].cumsum()
  fp = np.histogram(maps[~masks], bins=edges)[0][::-1].cumsum()
  if tp[-1] == 0:
    raise ValueError("PxAP needs at least one ground-truth foreground pixel")
  predicted = tp + fp
  with np.errstate(invalid="ignore", divide="ignore"):
    precision = np.where(predicted > 0, tp / predicted, 0.0)
  recall = tp / tp[-1]
  keep = predicted[1:] > 0
  return float(100 * (precision[1:] * np.diff(recall))[keep].sum()), precision, recall


def cam_boxes(maps_NHW: np.ndarray, fraction: float = CAM_FRACTION, gt_boxes=None):
  """CAM's boxes: (IoU with the best ground-truth box (N,) or None, the boxes (N, 4)) around the largest
  component of {map >= fraction * max(map)} of each raw map (the threshold capped at max, so an
  all-negative map still has one)."""
  maps = np.asarray(maps_NHW, np.float64)
  top = maps.max(axis=(1, 2))
  boxes, iou, _ = superlevel_components(maps, np.minimum(fraction * top, top)[:, None], gt_boxes)
  return (None if iou is None else iou[:, 0]), boxes[:, 0]


def mask_boxes(masks_NHW: np.ndarray) -> np.ndarray:
  """The bounding box (N, 4) of each mask's pixels (the whole image for an empty mask)."""
  masks = np.asarray(masks_NHW, bool)
  rows, cols = masks.any(2), masks.any(1)
  first = lambda a: np.where(a.any(1), a.argmax(1), 0)
  last = lambda a: np.where(a.any(1), a.shape[1] - 1 - a[:, ::-1].argmax(1), a.shape[1] - 1)
  return np.stack([first(rows), first(cols), last(rows), last(cols)], -1)


def whole_image_iou(h: int, w: int, gt_boxes) -> np.ndarray:
  """IoU (N,) of the whole-image box with each image's best ground-truth box: what a map that knows nothing
  gets."""
  return box_iou(np.array([0, 0, h - 1, w - 1]), _as_gt(gt_boxes)).max(-1)


def held_out_box_acc(heldout_iou_NT: np.ndarray, test_iou_NT: np.ndarray, delta: float = 0.5) -> tuple[float, int]:
  """Choe et al.'s fixed protocol at one IoU threshold `delta`: (BoxAcc in % of the test split at the map
  threshold where the held-out split's BoxAcc is best, that threshold's index; ties go to the lowest, as in
  max_box_acc)."""
  _, best, _ = max_box_acc(heldout_iou_NT, delta)
  return float(100 * (test_iou_NT[:, best] >= delta).mean()), best


def _concat_gt(a_NM4: np.ndarray, b_NM4: np.ndarray) -> np.ndarray:
  """Two splits' boxes (N, M, 4) in one array; the split with fewer boxes per image is padded with copies
  of each image's first box, which change no best-over-boxes IoU."""
  m = max(a_NM4.shape[1], b_NM4.shape[1])
  pad = lambda g: np.concatenate([g, np.repeat(g[:, :1], m - g.shape[1], 1)], 1)
  return np.concatenate([pad(a_NM4), pad(b_NM4)])


def fixed_protocol_scores(heldout_maps_NHW: np.ndarray, heldout_boxes, test_maps_NHW: np.ndarray, test_boxes,
                          test_masks_NHW: np.ndarray | None = None, thresholds=THRESHOLDS) -> dict:
  """MaxBoxAcc and MaxBoxAccV2 of the test split's maps with each IoU's map threshold chosen on the held-out
  split (Choe et al.'s protocol), PxAP of the test split (threshold-free), the floors, and what choosing the
  thresholds on the test split itself would report (`test_chosen_max_box_acc_v2`, at least as high)."""
  heldout, test = np.asarray(heldout_maps_NHW), np.asarray(test_maps_NHW)
  n, (_, h, w) = len(heldout), test.shape
  # One pass over both splits: its cost grows with the pixels per map far more than with the maps.
  largest, best = threshold_ious(minmax_normalize(np.concatenate([heldout, test])),
                                 _concat_gt(_as_gt(heldout_boxes), _as_gt(test_boxes)), thresholds)
  acc, acc_t = held_out_box_acc(largest[:n], largest[n:], 0.5)
  v2 = {d: held_out_box_acc(best[:n], best[n:], d) for d in IOU_THRESHOLDS_V2}
  whole = whole_image_iou(h, w, test_boxes)
  out = {
      "num_heldout_images": n, "num_test_images": len(test),
      "max_box_acc": acc, "max_box_acc_threshold": float(thresholds[acc_t]),
      "max_box_acc_v2": float(np.mean([v[0] for v in v2.values()])),
      "max_box_acc_v2_by_iou": {str(d): v[0] for d, v in v2.items()},
      "max_box_acc_v2_threshold_by_iou": {str(d): float(thresholds[v[1]]) for d, v in v2.items()},
      "test_chosen_max_box_acc_v2": float(np.mean([max_box_acc(best[n:], d)[0] for d in IOU_THRESHOLDS_V2])),
      "floor_whole_image_box_acc": float(100 * (whole >= 0.5).mean()),
      "floor_whole_image_box_acc_v2": float(np.mean([100 * (whole >= d).mean() for d in IOU_THRESHOLDS_V2])),
  }
  if test_masks_NHW is not None:
    masks = np.asarray(test_masks_NHW, bool)
    out["pxap"] = pxap(minmax_normalize(test), masks, thresholds)[0]
    out["floor_pxap"] = float(100 * masks.mean())
  return out


def localization_scores(maps_NHW: np.ndarray, gt_boxes, gt_masks_NHW: np.ndarray | None = None,
                        thresholds=THRESHOLDS, correct_N: np.ndarray | None = None) -> dict:
  """Every score above for upsampled present-class maps, with the floors a map that knows nothing gets
  (the whole-image box; PxAP of a constant map = 100 * foreground share) and the per-threshold curves.
  With `correct_N` (the prediction was right) also CAM's top-1 localization: right class and IoU >= 0.5."""
  maps = np.asarray(maps_NHW)
  n, h, w = maps.shape
  maps01 = minmax_normalize(maps)
  largest, best = threshold_ious(maps01, gt_boxes, thresholds)
  acc, best_t, curve = max_box_acc(largest, 0.5)
  v2 = {d: max_box_acc(best, d) for d in IOU_THRESHOLDS_V2}
  whole = whole_image_iou(h, w, gt_boxes)
  cam_iou, _ = cam_boxes(maps, CAM_FRACTION, gt_boxes)
  out = {
      "num_images": n,
      "max_box_acc": acc, "max_box_acc_threshold": float(thresholds[best_t]),
      "max_box_acc_v2": float(np.mean([v[0] for v in v2.values()])),
      "max_box_acc_v2_by_iou": {str(d): v[0] for d, v in v2.items()},
      "max_box_acc_v2_threshold_by_iou": {str(d): float(thresholds[v[1]]) for d, v in v2.items()},
      "cam20_box_acc": float(100 * (cam_iou >= 0.5).mean()),
      **({} if correct_N is None else {"cam20_top1_loc": float(100 * ((cam_iou >= 0.5) & correct_N).mean())}),
      "floor_whole_image_box_acc": float(100 * (whole >= 0.5).mean()),
      "floor_whole_image_box_acc_v2": float(np.mean([100 * (whole >= d).mean() for d in IOU_THRESHOLDS_V2])),
      "curves": {"thresholds": [float(t) for t in thresholds], "box_acc": curve.tolist(),
                 "box_acc_v2_by_iou": {str(d): v[2].tolist() for d, v in v2.items()}},
  }
  if gt_masks_NHW is not None:
    masks = np.asarray(gt_masks_NHW, bool)
    out["pxap"], precision, recall = pxap(maps01, masks, thresholds)
    out["floor_pxap"] = float(100 * masks.mean())
    out["curves"]["pxap_precision"], out["curves"]["pxap_recall"] = precision.tolist(), recall.tolist()
  return out
