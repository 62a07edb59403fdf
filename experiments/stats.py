"""Summaries across seeds: mean with a 95% Student-t interval, and a standardized effect size."""

import numpy as np
from scipy import stats


def summarize(values) -> dict:
  """Mean, 95% t interval (half-width 0 for one value), n and the values themselves."""
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
  return {"mean": mean, "lo": mean - half, "hi": mean + half, "n": len(v), "values": v.tolist()}


def paired_difference(a: dict, b: dict) -> dict:
  """summarize() of a - b seed by seed, for two summaries whose seed i shares initial weights and batches."""
  return summarize(np.subtract(a["values"], b["values"]))


def cohens_d(a, b) -> float:
  """(mean a - mean b) / pooled standard deviation; inf when both are constant and differ."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
  diff = a.mean() - b.mean()
  if pooled == 0:
    return 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
  return float(diff / pooled)


def fmt(summary: dict, scale: float = 1.0, digits: int = 1) -> str:
  """'mean [lo, hi]' for a Markdown table."""
  m, lo, hi = (summary[k] * scale for k in ("mean", "lo", "hi"))
  return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
