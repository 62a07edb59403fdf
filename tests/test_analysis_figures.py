"""Figures are written as PNGs for every kind of input they take."""

import numpy as np

from gap_jax.analysis import figures

PNG = b"\x89PNG\r\n\x1a\n"


def test_class_map_grid_for_few_and_many_classes_and_float_images(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 12, 12, 1)).astype(np.uint8)
  path = figures.class_map_grid(images, rng.normal(size=(3, 3, 3, 4)), np.array([0, 3, 2]),
                                tmp_path / "a.png", class_names=["a", "b", "c", "d"], title="four classes")
  assert path.read_bytes()[:8] == PNG
  float_rgb = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)  # e.g. GCN + ZCA images
  path = figures.class_map_grid(float_rgb, rng.random((2, 2, 2, 100)), np.array([5, 99]), tmp_path / "b.png",
                                logits_NK=rng.normal(size=(2, 100)))
  assert path.read_bytes()[:8] == PNG


def test_erf_heatmaps_and_metric_curves(tmp_path):
  erf = np.outer(np.hanning(15), np.hanning(15))
  path = figures.erf_heatmaps({"trained": erf / erf.sum(), "init": np.zeros((15, 15))}, tmp_path / "erf.png",
                              analytic=(7.0, 7.0, 11),
                              squares={"trained": (7.0, 7.0, 7), "init": (7.0, 7.0, None)})
  assert path.read_bytes()[:8] == PNG
  seeds = np.random.default_rng(0).normal(size=(3, 4)) + np.arange(4)
  path = figures.metric_curves([1, 2, 4, 8], {"gap": seeds, "gmp": seeds[0] * 2}, tmp_path / "c.png",
                               xlabel="depth", ylabel="MaxBoxAcc", xscale="log")
  assert path.read_bytes()[:8] == PNG
