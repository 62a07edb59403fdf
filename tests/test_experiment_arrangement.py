"""The pair-statistics shortcut (experiments/shortcuts.py) against independent truths: a brute-force count of
bright pixel pairs, its blindness to a 180-degree rotation, and what it makes of the arrangement data."""

import types

import numpy as np

from experiments import shortcuts
from gap_jax.data import arrangement
from gap_jax.data.types import Split


def dataset(train, test):
  return types.SimpleNamespace(train=Split(*train), test=Split(*test))


def brute_force_pairs(bright: np.ndarray, dy: int, dx: int) -> int:
  """Bright pixels p, one by one, whose p + (dy, dx) is inside the image and bright too."""
  h, w = bright.shape
  return sum(bool(bright[y, x] and 0 <= y + dy < h and 0 <= x + dx < w and bright[y + dy, x + dx])
             for y in range(h) for x in range(w))


def test_pair_features_count_the_bright_pairs_at_each_offset():
  rng = np.random.default_rng(0)
  images = rng.choice(np.array([0, 100, 127, 128, 200, 255], np.uint8), (2, 9, 7, 1))  # 127 dark, 128 bright
  features = shortcuts.pair_features(images, max_offset=4)
  offsets = shortcuts.pair_offsets(4)
  assert len(offsets) == (9 * 9 + 1) // 2 and [0, 0] in offsets.tolist()
  for image, f in zip(images, features):
    bright = image[..., 0] > 127
    expected = [brute_force_pairs(bright, dy, dx) for dy, dx in offsets]
    assert f.tolist() == expected and f[offsets.tolist().index([0, 0])] == bright.sum()


def test_pair_features_do_not_change_under_a_180_degree_rotation():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, (4, 12, 12, 1)).astype(np.uint8)
  rotated = images[:, ::-1, ::-1]
  assert not np.array_equal(images, rotated)
  np.testing.assert_array_equal(shortcuts.pair_features(images, 6), shortcuts.pair_features(rotated, 6))


def test_pair_statistics_classify_the_arrangement_that_the_image_mean_cannot():
  """The review's finding: neighbouring-motif pair counts separate x, plus and scattered."""
  from experiments.arrangement import CELL, MOTIF
  train = arrangement.generate(600, 0, cell=CELL, motif=MOTIF)[:2]
  test = arrangement.generate(300, 1, cell=CELL, motif=MOTIF)[:2]
  b = shortcuts.baselines(dataset(train, test))
  assert b["chance"] < 0.4 and b["image_mean"] < b["chance"] + 0.07 and b["bright_pixels"] < b["chance"] + 0.07
  assert b["pair_statistics"] > 0.95, b
  # pairs within a motif (offsets up to 2 px) are the same in every class; neighbours CELL px apart are not
  assert shortcuts.pair_statistics_accuracy(dataset(train, test), max_offset=2) < b["chance"] + 0.07


def test_classes_that_are_each_others_180_degree_rotation_are_at_chance():
  """Class 1 is class 0 turned by 180 degrees; every test image of class 1 is the turn of one of class 0, so
  equal features give equal predictions and exactly half of the test set is right, whatever was learnt."""
  rng = np.random.default_rng(2)
  ell = np.zeros((5, 5), np.uint8)
  ell[:, 0] = ell[-1, :3] = 255  # an L: not its own 180-degree turn

  def images(n):
    out = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
    for image, (y, x) in zip(out, rng.integers(0, 12, (n, 2))):
      image[y:y + 5, x:x + 5] = np.maximum(image[y:y + 5, x:x + 5], ell)
    return out[..., None]

  train_x = np.concatenate([images(100), images(100)[:, ::-1, ::-1]])
  test_0 = images(50)
  test_x = np.concatenate([test_0, test_0[:, ::-1, ::-1]])
  labels = np.repeat(np.array([0, 1], np.int32), [100, 100]), np.repeat(np.array([0, 1], np.int32), [50, 50])
  data = dataset((train_x, labels[0]), (test_x, labels[1]))
  assert shortcuts.pair_statistics_accuracy(data, max_offset=6) == 0.5
  # yet the classes differ: a statistic of three pixels, bright ones with a bright one above and to the right
  # (the L's corner; the turned L has none), tells them apart
  def corners(x):
    b = x[..., 0] > 127
    return (b[:, 1:, :-1] & b[:, :-1, :-1] & b[:, 1:, 1:]).sum((1, 2))
  assert shortcuts.gaussian_accuracy(corners(train_x), labels[0], corners(test_x), labels[1]) == 1.0
