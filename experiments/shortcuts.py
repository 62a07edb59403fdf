"""Shortcut baselines of a dataset: how well a class is told from one number per image that needs no shape,
arrangement or position, so a trained network's accuracy can be read against what a shortcut already gives.

Each feature is classified by a one-dimensional Gaussian per class (fit on the training split, scored on the
test split): the image mean, and the count of bright pixels (above half the range). Beside them, chance:
the most frequent test class.
"""

import numpy as np
from scipy import stats as scipy_stats

FEATURES = {
    "image_mean": lambda x: x.reshape(len(x), -1).mean(1),
    "bright_pixels": lambda x: (x.reshape(len(x), -1) > 127).sum(1),
}


def gaussian_accuracy(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray) -> float:
  """Accuracy of the maximum-likelihood class under one Gaussian per class (with its prior) on a feature."""
  classes = np.unique(train_y)
  log_p = []
  for c in classes:
    f = train_f[train_y == c].astype(np.float64)
    log_p.append(scipy_stats.norm.logpdf(test_f, f.mean(), max(f.std(), 1e-6)) + np.log(len(f) / len(train_f)))
  return float((classes[np.argmax(log_p, axis=0)] == test_y).mean())


def baselines(data) -> dict[str, float]:
  """Chance and each feature's accuracy for a gap_jax.data.Dataset of uint8 images."""
  train, test = data.train, data.test
  out = {"chance": float(np.bincount(test.labels).max() / len(test))}
  for name, feature in FEATURES.items():
    out[name] = gaussian_accuracy(feature(train.images), train.labels, feature(test.images), test.labels)
  return out
