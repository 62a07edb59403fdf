"""The counterexample experiment against independent truths: the data's equal means and histograms counted
directly, the 1 px theory (a pointwise network's GAP logits depend only on the histogram) on a real RFNet,
the measure on hand-made maps, the planted controls through its own decide, and a tiny end-to-end run."""

import dataclasses
import json

import jax
import numpy as np
import pytest

from experiments import counterexample as experiment
from experiments.framework import VERDICTS, check_controls, run
from gap_jax.data import counterexample, load_dataset
from gap_jax.data.counterexample import BRIGHT, CORNERS, DARK, EDGES, MEAN, PATTERNS, UNIFORM
from gap_jax.errors import UserError
from gap_jax.models.rfnet import RFNet

RING = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))  # the outer cells, clockwise


def ring_rotated(image_HW: np.ndarray, block: int, y0: int, x0: int) -> np.ndarray:
  """The image with each outer cell's block (noise and all) moved one cell clockwise: corners -> edges."""
  out = image_HW.copy()
  cell = lambda r, c: (slice(y0 + r * block, y0 + (r + 1) * block), slice(x0 + c * block, x0 + (c + 1) * block))
  for src, dst in zip(RING, RING[1:] + RING[:1]):
    out[cell(*dst)] = image_HW[cell(*src)]
  return out


def test_the_three_patterns_share_a_mean_and_corners_and_edges_a_histogram():
  cells = PATTERNS.reshape(3, 9).astype(np.int64)
  assert (cells.sum(1) == 9 * MEAN).all()  # exactly, not up to rounding
  assert sorted(cells[CORNERS]) == sorted(cells[EDGES]) == [DARK] * 5 + [BRIGHT] * 4
  assert not np.array_equal(cells[CORNERS], cells[EDGES])
  lit = lambda k: {(r, c) for r in range(3) for c in range(3) if PATTERNS[k, r, c] == BRIGHT}
  assert lit(CORNERS) == {(0, 0), (0, 2), (2, 0), (2, 2)} and lit(EDGES) == {(0, 1), (1, 0), (1, 2), (2, 1)}


def test_images_are_the_patterns_at_their_layouts_with_equal_means_and_balanced_classes():
  images, labels, layouts = counterexample.generate(600, seed=0, noise=0)
  assert np.bincount(labels).tolist() == [200, 200, 200]
  for image, label, (block, y0, x0) in zip(images[..., 0], labels, layouts):
    assert 3 <= block <= 4 and 0 <= y0 <= 24 - 3 * block and 0 <= x0 <= 24 - 3 * block
    inside = image[y0:y0 + 3 * block, x0:x0 + 3 * block]
    np.testing.assert_array_equal(inside[::block, ::block], PATTERNS[label])  # each block's corner pixel
    assert (image == DARK).sum() == image.size - 9 * block * block + (PATTERNS[label] == DARK).sum() * block ** 2
    # every class has the same mean at this layout: the uniform pattern drawn there
    assert image.astype(np.int64).sum() == counterexample.render(UNIFORM, block, y0, x0, 24).astype(np.int64).sum()
  noisy, noisy_labels, noisy_layouts = counterexample.generate(600, seed=0, noise=16)
  assert np.array_equal(noisy_labels, labels) and np.array_equal(noisy_layouts, layouts)  # noise drawn last
  deviation = noisy.reshape(600, -1).astype(np.float64).mean(1) - images.reshape(600, -1).mean(1)
  assert np.abs(deviation).max() < 3  # the mean of 576 noise draws of sd 9.5: up to about 2 in 600 images
  assert 0 < np.abs(noisy.astype(int) - images).max() <= 16


def test_corners_and_edges_images_of_one_layout_have_identical_histograms():
  for block, y0, x0 in ((3, 0, 0), (4, 5, 11), (3, 15, 2)):
    corners, edges = (counterexample.render(k, block, y0, x0, 24) for k in (CORNERS, EDGES))
    assert not np.array_equal(corners, edges)
    histogram = lambda image: np.bincount(image.ravel(), minlength=256)
    np.testing.assert_array_equal(histogram(corners), histogram(edges))
    np.testing.assert_array_equal(ring_rotated(corners, block, y0, x0), edges)


def test_generation_is_seeded_and_loads_through_the_config():
  a, b, c = (counterexample.generate(30, seed) for seed in (5, 5, 6))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])
  config = experiment.config("gap", 1, "zeros")
  assert "seed" in config.counterexample  # framework.run_seeds draws each seed's own data through it
  config.counterexample.num_train, config.counterexample.num_test = 30, 12
  data = load_dataset(config)
  assert data.train.images.shape == (30, 24, 24, 1) and data.num_classes == 3
  np.testing.assert_array_equal(data.test.images, counterexample.generate(12, 1)[0])  # test: seed + 1


@pytest.mark.parametrize("kwargs,match", [({"max_block": 9}, "3 \\* max_block <= image_size"),
                                          ({"min_block": 5, "max_block": 4}, "min_block <= max_block"),
                                          ({"noise": 30}, "no pixel is clipped")])
def test_bad_settings_are_refused(kwargs, match):
  with pytest.raises(UserError, match=match):
    counterexample.generate(4, 0, **kwargs)


def gap_logits(kernel: int, depth: int, images_NHW: np.ndarray, seed: int) -> np.ndarray:
  model = RFNet(num_classes=3, head="gap", kernel=kernel, depth=depth, width=8, padding="circular",
                final_relu=False, dropout=0.0)
  x = jax.numpy.asarray(images_NHW[..., None] / 255.0, jax.numpy.float32)
  params = model.init(jax.random.key(seed), x)
  return np.asarray(model.apply(params, x)[0])


def test_at_1px_gap_logits_depend_only_on_the_histogram():
  """The theory: with 1x1 convolutions a logit is the mean over pixels of one function of the pixel, so the
  corners image and the edges image made of the same blocks (its outer cells moved one step round, noise
  and all) get identical logits, whatever the weights. A 3x3 network, which sees neighbours, does not."""
  images, labels, layouts = counterexample.generate(40, seed=3)
  pairs = [(image, ring_rotated(image, *layout)) for image, label, layout in zip(images[..., 0], labels, layouts)
           if label == CORNERS]
  corners = np.stack([p[0] for p in pairs])
  edges = np.stack([p[1] for p in pairs])
  assert not np.array_equal(corners, edges)
  for seed in range(3):
    np.testing.assert_allclose(gap_logits(1, 2, corners, seed), gap_logits(1, 2, edges, seed), rtol=1e-5,
                               atol=1e-6)
  seen = np.abs(gap_logits(3, 2, corners, 0) - gap_logits(3, 2, edges, 0)).max()
  assert seen > 1e-3, seen


def test_the_measure_on_hand_made_logits_and_maps():
  images, labels, layouts = counterexample.generate(300, seed=4)
  n = len(labels)
  rng = np.random.default_rng(0)
  right = np.eye(3)[labels]
  maps = rng.normal(0, 1, (n, 24, 24, 3))
  m = experiment.measure_logits_maps(right, maps, labels, layouts)
  assert m["corners_vs_edges"] == 1.0 and m["uniform_vs_rest"] == 1.0
  says_corners = np.tile([1.0, 0.0, 0.0], (n, 1))  # label-blind: chance on the pair, whatever the counts
  m = experiment.measure_logits_maps(says_corners, maps, labels, layouts)
  assert m["corners_vs_edges"] == 0.5 and m["uniform_vs_rest"] == 0.5
  # pointwise maps: no edge is special; maps that fire on the edges of the blocks: far above 1
  x = images[..., 0].astype(np.float64)
  pointwise = np.stack([np.sin(x / 20), np.cos(x / 30), x], -1)
  ratio = lambda maps_NHWK: experiment.measure_logits_maps(right, maps_NHWK, labels, layouts)["edge_energy_ratio"]
  assert ratio(pointwise) == pytest.approx(1, abs=0.1)
  clean = np.stack([counterexample.render(k, *layout, 24) for k, layout in zip(labels, layouts)])
  edgy = pointwise.copy()
  edgy[..., CORNERS] += 50 * experiment.edge_bands(clean)
  assert ratio(edgy) > 5
  # a map added to every class changes no softmax output, and no measure
  common = edgy + rng.normal(0, 5, (n, 24, 24, 1))
  assert experiment.measure_logits_maps(right, common, labels, layouts) == pytest.approx(
      experiment.measure_logits_maps(right, edgy, labels, layouts), rel=1e-9)


def test_planted_pair_detector_sees_what_the_histogram_cannot():
  assert experiment.planted_runs(1, True)[0]["corners_vs_edges"] == 1.0
  assert abs(experiment.planted_runs(1, False)[0]["corners_vs_edges"] - 0.5) < 0.05
  assert experiment.planted_runs(1, False)[0]["uniform_vs_rest"] == 1.0


def test_controls_come_out_as_expected_through_decide():
  checked = check_controls(experiment.EXPERIMENT)
  assert [c["expected"] for c in checked] == ["supported", "refuted", "refuted"]
  assert all(c["passed"] for c in checked), checked


def test_a_supported_verdict_rests_on_gap_at_1px_and_at_the_spanning_fields():
  """What the rule reads; the fields between and the gmp and fc heads are descriptive."""
  points = experiment.planted_summaries(experiment.SPAN)
  verdict = experiment.decide(points)
  read = [k for k, p in points.items() if p["params"]["head"] == "gap" and
          (p["params"]["receptive_field"] == 1 or p["params"]["receptive_field"] >= experiment.SPAN)]
  assert verdict.verdict == "supported" and sorted(verdict.rests_on) == sorted(read)
  assert all(points[k]["params"]["head"] == "gap" for k in verdict.rests_on) and len(read) < len(points)


def test_decide_needs_both_ends_of_the_sweep():
  points = experiment.planted_summaries(experiment.SPAN)
  small_only = {k: p for k, p in points.items() if p["params"]["receptive_field"] < experiment.SPAN}
  assert experiment.decide(small_only).verdict == "inconclusive"
  off_1px = {k: p for k, p in points.items() if p["params"]["receptive_field"] > 1}
  assert experiment.decide(off_1px).verdict == "inconclusive"


def test_the_sweep_spans_the_fields_it_claims():
  points = experiment.sweep(False)
  fields = sorted({p.params["receptive_field"] for p in points})
  assert fields == list(experiment.FIELDS) and fields[0] == 1 and fields[-1] > 3 * 4  # past the largest pattern
  assert {p.params["head"] for p in points} == {"gap", "gmp", "fc"}
  assert len({p.key for p in points}) == len(points)
  quick = experiment.sweep(True)
  assert {p.params["receptive_field"] for p in quick if p.params["head"] == "gap"} == {1, experiment.SPAN}


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path):
  def tiny(quick):
    points = experiment.sweep(True)[:2]  # GAP at 1 px and at the spanning field
    for p in points:
      c = p.config
      c.num_train_steps, c.eval_every_steps, c.eval_batch_size, c.eval_train_examples = 3, 3, 64, 64
      c.batch_size = 32
      c.counterexample.num_train, c.counterexample.num_test = 64, 96
    return points
  results = run(dataclasses.replace(experiment.EXPERIMENT, sweep=tiny), tmp_path, quick=True, seeds=2)
  assert results["verdict"]["verdict"] in VERDICTS
  on_disk = json.loads((tmp_path / "results.json").read_text())
  for point in on_disk["points"].values():
    for metric in ("corners_vs_edges", "uniform_vs_rest", "edge_energy_ratio"):
      assert point[metric]["n"] == 2 and f"untrained/{metric}" in point
  assert "corners_vs_edges" in (tmp_path / "report.md").read_text()
