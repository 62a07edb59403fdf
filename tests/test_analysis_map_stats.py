"""Sparsity measures against their limits and against direct per-map implementations of the formulas."""

import math

import numpy as np
import pytest

from gap_jax.analysis.map_stats import gini, hoyer, map_stats, peak_to_mean, present_absent, summarize


def hoyer_direct(x: list[float]) -> float:
  n = len(x)
  l1, l2 = sum(abs(v) for v in x), math.sqrt(sum(v * v for v in x))
  return (math.sqrt(n) - l1 / l2) / (math.sqrt(n) - 1)


def gini_direct(x: list[float]) -> float:
  """Hurley & Rickard, term by term: c sorted ascending, k from 1."""
  c = sorted(abs(v) for v in x)
  n, l1 = len(c), sum(c)
  return 1 - 2 * sum((c[k - 1] / l1) * (n - k + 0.5) / n for k in range(1, n + 1))


@pytest.mark.parametrize("n", [4, 49, 64])
def test_limits_constant_and_one_hot(n):
  constant, one_hot = np.full((1, n), 3.0), np.eye(n)[[0, n // 2, n - 1]] * 2.5
  assert hoyer(constant)[0] == pytest.approx(0, abs=1e-12)
  assert gini(constant)[0] == pytest.approx(0, abs=1e-12)
  np.testing.assert_allclose(hoyer(one_hot), 1.0)
  # Hurley & Rickard's Gini of a one-hot vector is 1 - 1/n; normalised, it is 1.
  np.testing.assert_allclose(gini(one_hot), 1 - 1 / n)
  np.testing.assert_allclose(gini(one_hot, normalized=True), 1.0)
  assert peak_to_mean(one_hot)[0] == pytest.approx(n)


def test_against_direct_implementations():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(20, 25)) * rng.random((20, 1)) + rng.normal(size=(20, 1))
  for on, f in (("abs", abs), ("relu", lambda v: max(v, 0.0))):
    y = [[f(v) for v in row] for row in x.tolist()]
    np.testing.assert_allclose(hoyer(x, on), [hoyer_direct(r) if any(r) else np.nan for r in y], rtol=1e-10)
    np.testing.assert_allclose(gini(x, on), [gini_direct(r) if any(r) else np.nan for r in y], rtol=1e-10)


def test_all_zero_after_relu_is_undefined_not_zero():
  x = -np.ones((1, 9))
  assert np.isnan(hoyer(x)[0]) and np.isnan(gini(x)[0]) and np.isnan(peak_to_mean(x)[0])
  assert hoyer(x, on="abs")[0] == pytest.approx(0)


def test_map_stats_and_present_absent_split():
  maps = np.zeros((2, 2, 2, 3))
  maps[0, 0, 0, 1] = 4.0  # image 0, class 1: one-hot
  maps[1, :, :, 2] = [[1.0, 2.0], [3.0, -4.0]]  # image 1, class 2
  stats = map_stats(maps, tau=0.5)
  assert stats["hoyer"].shape == (2, 3)
  assert stats["hoyer"][0, 1] == pytest.approx(1) and stats["peak_to_mean"][0, 1] == pytest.approx(4)
  assert stats["mean"][1, 2] == pytest.approx(0.5) and stats["max"][1, 2] == 3 and stats["min"][1, 2] == -4
  assert stats["frac_pos"][1, 2] == 0.75 and stats["frac_above_tau"][1, 2] == 0.5  # 2 and 3 exceed 1.5
  labels = np.array([1, 2])
  present, absent = present_absent(stats["max"], labels)
  np.testing.assert_array_equal(present, [4.0, 3.0])
  assert sorted(absent) == [0.0] * 4
  summary = summarize(stats, labels)
  assert summary["present"]["max"]["mean"] == pytest.approx(3.5)
  assert summary["absent"]["hoyer"] == {"mean": None, "std": None, "median": None, "undefined": 4}
  assert summary["present_by_class"]["max"] == [None, 4.0, 3.0]
