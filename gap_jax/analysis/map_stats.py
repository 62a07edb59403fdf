"""Statistics of class maps, per image and class, split into the present (true) class and the absent ones.

Definitions (/work/shared/reference/pooling_and_maps.md), for one map x with n = H * W entries:
- mean, max, min: of x itself.
- frac_pos: share of locations with x > 0; frac_above_tau: share with x > tau * max(x).
- hoyer: (sqrt(n) - ||y||_1 / ||y||_2) / (sqrt(n) - 1), in [0, 1].
- gini (Hurley & Rickard): c = y sorted ascending, G = 1 - 2 sum_k (c_k / ||c||_1) (n - k + 1/2) / n, in
  [0, 1 - 1/n]; `normalized=True` scales it by n / (n - 1) so that a one-hot map scores 1.
- peak_to_mean: max(y) / mean(y).
Here y = relu(x) by default (`on="relu"`: sparsity of the positive evidence a map votes with), or |x|
(`on="abs"`). A map whose y is all zero has no sparsity: hoyer, gini and peak_to_mean are NaN there.
"""

import numpy as np

ON = {"relu": lambda x: np.maximum(x, 0.0), "abs": np.abs}
STATS = ("mean", "max", "min", "frac_pos", "frac_above_tau", "hoyer", "gini", "peak_to_mean")


def _y(x_MN: np.ndarray, on: str) -> np.ndarray:
  if on not in ON:
    raise ValueError(f"on={on!r}: use one of {sorted(ON)}")
  return ON[on](np.asarray(x_MN, np.float64))


def hoyer(x_MN: np.ndarray, on: str = "relu") -> np.ndarray:
  """Hoyer sparsity of each row (one map per row): 0 for a constant map, 1 for a one-hot map."""
  y = _y(x_MN, on)
  n = y.shape[-1]
  l1, l2 = y.sum(-1), np.sqrt((y * y).sum(-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(l2 > 0, (np.sqrt(n) - l1 / l2) / (np.sqrt(n) - 1), np.nan)


def gini(x_MN: np.ndarray, on: str = "relu", normalized: bool = False) -> np.ndarray:
  """Gini index of each row: 0 for a constant map, 1 - 1/n for a one-hot map (1 if `normalized`)."""
  c = np.sort(_y(x_MN, on), axis=-1)
  n = c.shape[-1]
  l1 = c.sum(-1, keepdims=True)
  k = np.arange(1, n + 1)
  with np.errstate(invalid="ignore", divide="ignore"):
    g = 1 - 2 * ((c / l1) * (n - k + 0.5) / n).sum(-1)
  g = np.where(l1[..., 0] > 0, g, np.nan)
  return g * n / (n - 1) if normalized else g


def peak_to_mean(x_MN: np.ndarray, on: str = "relu") -> np.ndarray:
  y = _y(x_MN, on)
  mean = y.mean(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(mean > 0, y.max(-1) / mean, np.nan)


def map_stats(maps_NHWK: np.ndarray, tau: float = 0.5, on: str = "relu") -> dict[str, np.ndarray]:
  """Every statistic of every map: name -> (N, K)."""
  maps = np.asarray(maps_NHWK, np.float64)
  n, h, w, k = maps.shape
  x = maps.transpose(0, 3, 1, 2).reshape(n * k, h * w)
  top = x.max(-1, keepdims=True)
  stats = {"mean": x.mean(-1), "max": top[:, 0], "min": x.min(-1), "frac_pos": (x > 0).mean(-1),
           "frac_above_tau": (x > tau * top).mean(-1), "hoyer": hoyer(x, on), "gini": gini(x, on),
           "peak_to_mean": peak_to_mean(x, on)}
  return {name: v.reshape(n, k) for name, v in stats.items()}


def present_absent(stat_NK: np.ndarray, labels_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The values of each image's present class (N,) and of its absent classes (N * (K - 1),)."""
  n, k = stat_NK.shape
  present = np.zeros((n, k), bool)
  present[np.arange(n), labels_N] = True
  return stat_NK[present], stat_NK[~present]


def describe(v: np.ndarray) -> dict:
  finite = v[~np.isnan(v)]
  if finite.size == 0:
    return {"mean": None, "std": None, "median": None, "undefined": int(v.size)}
  return {"mean": float(finite.mean()), "std": float(finite.std()), "median": float(np.median(finite)),
          "undefined": int(v.size - finite.size)}


def summarize(stats: dict[str, np.ndarray], labels_N: np.ndarray) -> dict:
  """Mean, std and median of every statistic over present and over absent maps (NaNs left out and
  counted as `undefined`), and the per-class mean of each statistic on that class's present maps."""
  out = {"present": {}, "absent": {}, "present_by_class": {}}
  for name, v in stats.items():
    present, absent = present_absent(v, labels_N)
    out["present"][name], out["absent"][name] = describe(present), describe(absent)
    by_class = []
    for c in range(v.shape[1]):
      values = v[labels_N == c, c]
      values = values[~np.isnan(values)]
      by_class.append(float(values.mean()) if values.size else None)
    out["present_by_class"][name] = by_class
  return out
