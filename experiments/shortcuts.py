"""Shortcut baselines of a dataset: how well a class is told from statistics of an image that need no shape,
arrangement or position, so a trained network's accuracy can be read against what a shortcut already gives.

One number per image is classified by a one-dimensional Gaussian per class (fit on the training split, scored
on the test split): the image mean, and the count of bright pixels (above half the range). Pair statistics
(`pair_features`) are the counts of bright-pixel pairs at each offset up to PAIR_MAX_OFFSET: what a unit with
a field of PAIR_MAX_OFFSET + 1 px sees of pairs, pooled over positions, so a network with such a field and
GAP can reach their accuracy without seeing any larger arrangement. Beside them, chance: the most frequent
test class.
"""

import numpy as np
from scipy import fft, optimize
from scipy import stats as scipy_stats

FEATURES = {
    "image_mean": lambda x: x.reshape(len(x), -1).mean(1),
    "bright_pixels": lambda x: (x.reshape(len(x), -1) > 127).sum(1),
}
PAIR_MAX_OFFSET = 12  # 13 px: past the arrangement's diagonal neighbours (cell 8, jitter 1), inside its span
PAIR_L2 = 1e-3  # on standardized features: the most accurate of 1e-3..1e-1 on arrangement, 600 training images


def gaussian_accuracy(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray) -> float:
  """Accuracy of the maximum-likelihood class under one Gaussian per class (with its prior) on a feature."""
  classes = np.unique(train_y)
  log_p = []
  for c in classes:
    f = train_f[train_y == c].astype(np.float64)
    log_p.append(scipy_stats.norm.logpdf(test_f, f.mean(), max(f.std(), 1e-6)) + np.log(len(f) / len(train_f)))
  return float((classes[np.argmax(log_p, axis=0)] == test_y).mean())


def pair_offsets(max_offset: int) -> np.ndarray:
  """(D, 2) offsets (dy, dx) with |dy|, |dx| <= max_offset, one of each pair d, -d (C(d) = C(-d)): dy > 0, or
  dy = 0 and dx >= 0. (0, 0) is the bright-pixel count."""
  r = range(-max_offset, max_offset + 1)
  return np.array([(dy, dx) for dy in range(max_offset + 1) for dx in r if dy > 0 or dx >= 0], np.int64)


def pair_features(images: np.ndarray, max_offset: int = PAIR_MAX_OFFSET, chunk: int = 1024) -> np.ndarray:
  """(N, D) autocorrelation of each image's bright pixels (x > 127) at pair_offsets(max_offset): the number of
  bright pixels p with p + d also bright and in the image, summed over channels. By FFT on images zero-padded
  by max_offset, so no pair wraps around; in chunks, so a 60 000-image dataset stays in memory.

  It is unchanged by rotating an image by 180 degrees (that maps every pair at d to one at -d), so classes that
  are each other's 180-degree rotation cannot be told apart by it."""
  x = images.reshape(images.shape[:3] + (-1,)) > 127  # (N, H, W, C)
  n, h, w, _ = x.shape
  ph, pw = fft.next_fast_len(h + max_offset), fft.next_fast_len(w + max_offset)
  off = pair_offsets(max_offset)
  out = np.empty((n, len(off)), np.int64)
  for s in range(0, n, chunk):
    f = fft.rfft2(np.moveaxis(x[s:s + chunk], -1, 1).astype(np.float64), (ph, pw))
    auto = fft.irfft2(f * f.conj(), (ph, pw)).sum(1)  # (n, ph, pw); lag -d sits at index P - d
    out[s:s + chunk] = np.rint(auto[:, off[:, 0] % ph, off[:, 1] % pw])
  return out


def logistic_accuracy(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                      l2: float = PAIR_L2) -> float:
  """Test accuracy of multinomial logistic regression on standardized features (L2 on the weights, not the
  biases). Convex with a unique optimum and fit by L-BFGS from zero, so deterministic; unlike naive Bayes it
  does not take the strongly correlated pair counts for independent evidence."""
  mu, sd = train_f.mean(0), train_f.std(0)
  sd[sd == 0] = 1.0  # a constant feature (an offset no pair reaches) stays zero
  classes, y = np.unique(train_y, return_inverse=True)
  xtr = np.hstack([(train_f - mu) / sd, np.ones((len(train_f), 1))])
  xte = np.hstack([(test_f - mu) / sd, np.ones((len(test_f), 1))])
  onehot = np.eye(len(classes))[y]
  shape = (xtr.shape[1], len(classes))

  def loss(flat):
    w = flat.reshape(shape)
    z = xtr @ w
    z -= z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    grad = xtr.T @ (np.exp(log_p) - onehot) / len(xtr)
    grad[:-1] += l2 * w[:-1]
    return -(onehot * log_p).sum(1).mean() + l2 / 2 * (w[:-1] ** 2).sum(), grad.ravel()

  w = optimize.minimize(loss, np.zeros(np.prod(shape)), jac=True, method="L-BFGS-B",
                        options={"maxiter": 500}).x.reshape(shape)
  return float((classes[np.argmax(xte @ w, 1)] == test_y).mean())


def pair_statistics_accuracy(data, max_offset: int = PAIR_MAX_OFFSET) -> float:
  """Test accuracy from bright-pixel pair counts at offsets up to `max_offset`: read over max_offset, the
  smallest field (max_offset + 1 px) whose pooled pair statistics already classify the data."""
  return logistic_accuracy(pair_features(data.train.images, max_offset), data.train.labels,
                           pair_features(data.test.images, max_offset), data.test.labels)


def baselines(data) -> dict[str, float]:
  """Chance and each shortcut's accuracy for a gap_jax.data.Dataset of uint8 images."""
  train, test = data.train, data.test
  out = {"chance": float(np.bincount(test.labels).max() / len(test))}
  for name, feature in FEATURES.items():
    out[name] = gaussian_accuracy(feature(train.images), train.labels, feature(test.images), test.labels)
  out["pair_statistics"] = pair_statistics_accuracy(data)
  return out
