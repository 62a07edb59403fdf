"""Summaries across seeds: mean with a 95% interval, a standardized effect size, and the intervals and tests
that stay in range: Wilson's for a proportion, a bootstrap interval for a mean, and an equivalence test (two
one-sided tests) for "at chance".

A summary's interval is the percentile bootstrap's from BOOTSTRAP_FROM seeds on (a full run: it stays inside
the values' range, so an accuracy's never passes 1), and Student's t below that, where a bootstrap of 3
values would be far too narrow."""

import numpy as np
from scipy import stats


BOOTSTRAP_FROM = 10


def summarize(values) -> dict:
  """Mean, 95% interval (bootstrap from BOOTSTRAP_FROM values, else t; half-width 0 for one value), which
  of the two, n and the values themselves."""
  v = np.asarray(values, np.float64)
  mean = float(v.mean())
  if len(v) >= BOOTSTRAP_FROM and np.isfinite(v).all():
    lo, hi = bootstrap_mean(v)
    return {"mean": mean, "lo": lo, "hi": hi, "interval": "bootstrap", "n": len(v), "values": v.tolist()}
  half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0
  return {"mean": mean, "lo": mean - half, "hi": mean + half, "interval": "t", "n": len(v), "values": v.tolist()}


def balanced_accuracy(predicted, labels) -> float:
  """Mean over the classes present of the share of each predicted right: 0.5 for two classes whatever a
  label-blind rule says."""
  predicted, labels = np.asarray(predicted), np.asarray(labels)
  return float(np.mean([(predicted[labels == k] == k).mean() for k in np.unique(labels)]))


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


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
  """Wilson's 95% score interval for a proportion: inside [0, 1] even at 0 or n successes."""
  p = successes / n
  centre = (p + z * z / (2 * n)) / (1 + z * z / n)
  half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
  return float(centre - half), float(centre + half)


def bootstrap_mean(values, rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap 95% interval of the mean: inside the values' range, whatever their spread."""
  v = np.asarray(values, np.float64)
  means = np.random.default_rng(seed).choice(v, (rounds, len(v))).mean(1)
  return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def equivalent(values, target: float, margin: float, alpha: float = 0.05) -> bool:
  """Two one-sided t tests: is the mean within target +- margin (e.g. "at chance")? False when the data
  cannot tell, so "not shown equivalent" never reads as "shown different"."""
  v = np.asarray(values, np.float64)
  se = v.std(ddof=1) / np.sqrt(len(v))
  if se == 0:
    return bool(abs(v.mean() - target) < margin)
  lower = stats.t.sf((v.mean() - (target - margin)) / se, len(v) - 1)  # H0: mean <= target - margin
  upper = stats.t.cdf((v.mean() - (target + margin)) / se, len(v) - 1)  # H0: mean >= target + margin
  return bool(max(lower, upper) < alpha)
