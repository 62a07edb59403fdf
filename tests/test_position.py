"""The position probe (issue 18): its data hides everything but position, circular padding is exactly blind to
it and zero padding sees it once the field holds patch and border, and the rule tells planted outcomes apart."""

import dataclasses
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from experiments import position as experiment
from experiments import shortcuts
from experiments.framework import run
from gap_jax.data import load_dataset, position
from gap_jax.data.types import Split
from gap_jax.errors import UserError
from gap_jax.models.rfnet import RFNet


def test_patch_is_pixel_identical_and_the_only_bright_thing():
  images, labels, masks, boxes = position.generate(400, seed=0)
  pattern = position.patch_pattern(4)
  assert set(np.unique(labels)) == {0, 1} and (labels == 0).sum() == 200
  for image, mask, (y0, x0, y1, x1) in zip(images[..., 0], masks, boxes):
    np.testing.assert_array_equal(image[y0:y1, x0:x1], pattern)
    assert mask[y0:y1, x0:x1].all() and mask.sum() == pattern.size
    np.testing.assert_array_equal(image > 127, mask)
  half = 12
  top = (boxes[:, 2] <= half) & (boxes[:, 3] <= half)
  bottom = (boxes[:, 0] >= half) & (boxes[:, 1] >= half)
  np.testing.assert_array_equal(top, labels == 0)
  np.testing.assert_array_equal(bottom, labels == 1)


def test_each_bottom_right_image_is_a_top_left_image_rolled_by_half():
  images, labels, masks, _ = position.generate(200, seed=1)
  rolled = {np.roll(x, (12, 12), axis=(0, 1)).tobytes() for x in images[labels == 0]}
  assert {x.tobytes() for x in images[labels == 1]} == rolled and len(rolled) == 100


def test_classes_have_the_same_means_histograms_and_border_distances():
  images, labels, _, boxes = position.generate(600, seed=2)
  means = [np.sort(images[labels == k].mean((1, 2, 3))) for k in (0, 1)]
  np.testing.assert_array_equal(means[0], means[1])
  histograms = [np.bincount(images[labels == k].ravel(), minlength=256) for k in (0, 1)]
  np.testing.assert_array_equal(histograms[0], histograms[1])
  # pixels between the patch and its corner's borders: top/left for class 0, bottom/right for class 1
  gap_tl = boxes[labels == 0, :2].ravel()
  gap_br = (24 - boxes[labels == 1, 2:]).ravel()
  margin = position.margin(24, 4, 2)
  assert margin == 4 and set(gap_tl) == set(gap_br) == set(range(margin - 2, margin + 3))


def test_shortcut_baselines_are_at_chance():
  train = position.generate(400, seed=0)[:2]
  test = position.generate(200, seed=1)[:2]
  b = shortcuts.baselines(types.SimpleNamespace(train=Split(*train), test=Split(*test)))
  assert b == {"chance": 0.5, "image_mean": 0.5, "bright_pixels": 0.5, "pair_statistics": 0.5}


def test_generator_is_seeded_and_loads_through_the_config():
  a, b, c = (position.generate(20, seed=s) for s in (3, 3, 4))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[0], c[0])
  config = ml_collections.ConfigDict({"dataset": "position", "position": {**position.DEFAULTS,
                                                                          "num_train": 64, "num_test": 32}})
  data = load_dataset(config)
  assert data.num_classes == 2 and data.image_shape == (24, 24, 1) and len(data.test) == 32
  np.testing.assert_array_equal(data.test.labels, position.generate(32, seed=1)[1])


@pytest.mark.parametrize("kwargs, message", [
    (dict(num=5), "whole pairs"), (dict(image_size=25), "must be even"), (dict(patch=5), "change position.patch"),
    (dict(jitter=5), "leaves its quadrant"), (dict(noise=128), "as bright as the patch")])
def test_bad_layouts_are_refused(kwargs, message):
  with pytest.raises(UserError, match=message):
    position.generate(**{"num": 4, "seed": 0, **kwargs})


def test_a_config_without_the_section_is_refused():
  with pytest.raises(UserError, match="needs a `position` section"):
    load_dataset(ml_collections.ConfigDict({"dataset": "position"}))


def gap_logits(padding: str, depth: int, images_NHW: np.ndarray) -> np.ndarray:
  """An untrained RFNet's GAP logits (float64 out) for uint8 images scaled to [0, 1]."""
  model = RFNet(num_classes=2, head="gap", padding=padding, depth=depth, width=8, final_relu=False,
                kernel_init="he_normal")  # keeps activations O(1) through the depth
  x = jnp.asarray(images_NHW[..., None] / 255.0, jnp.float32)
  params = model.init(jax.random.key(depth), x[:1])
  return np.asarray(model.apply(params, x)[0], np.float64)


def test_circular_padding_gives_a_rolled_image_the_same_logits():
  images = position.generate(16, seed=5)[0][..., 0]
  for depth in (1, 6):
    logits = gap_logits("circular", depth, images)
    for shift in ((12, 12), (5, -9)):  # the data's roll, and any other
      np.testing.assert_allclose(gap_logits("circular", depth, np.roll(images, shift, (1, 2))), logits,
                                 rtol=0, atol=1e-6)  # float32 sums in another order: ~3e-8 seen
    # zero padding: the border windows see other noise after the roll, so the logits move (more at depth 6)
    zeros_change = np.abs(gap_logits("zeros", depth, position.roll_half(images)) - gap_logits("zeros", depth, images))
    assert zeros_change.max() > 1e-3, (depth, zeros_change.max())


@pytest.mark.parametrize("padding", ["zeros", "valid"])
def test_the_border_leaks_position_once_a_field_holds_it_and_the_patch(padding):
  """On a plain background only windows that hold the patch and the border differ between a top-left image
  and its roll; border_reach says from which field they exist (here d = 4 px from the patch: 6 px)."""
  image = np.full((1, 24, 24), 60, np.uint8)
  image[0, 4:8, 4:8] = position.patch_pattern(4)
  reach = position.border_reach(24, 4, jitter=0)
  assert reach == (6, 6)
  for depth, field in ((1, 3), (2, 5), (3, 7), (6, 13)):
    change = np.abs(gap_logits(padding, depth, position.roll_half(image)) - gap_logits(padding, depth, image)).max()
    # below the reach only the order of a float32 sum differs (< 1e-6 seen); from it on, >= 4e-4 seen
    assert (change > 1e-5) == (field >= reach[0]), (depth, change)


def test_controls_come_out_as_planted_through_decide():
  verdicts = [(c.expected, experiment.decide(c.summaries).verdict) for c in experiment.controls()]
  assert verdicts == [("supported", "supported"), ("refuted", "refuted"), ("refuted", "refuted")]


def test_a_supported_verdict_rests_on_circular_and_the_largest_zeros_field_only():
  """The intermediate zeros and valid fields are descriptive: runs still learning there leave the verdict as is."""
  planted = experiment.planted_summaries(lambda padding, rf: "chance" if padding == "circular" else "perfect")
  verdict = experiment.decide(planted)
  largest_zeros = max((k for k, s in planted.items() if s["params"]["padding"] == "zeros"),
                      key=lambda k: planted[k]["params"]["receptive_field"])
  circular = [k for k, s in planted.items() if s["params"]["padding"] == "circular"]
  assert verdict.verdict == "supported" and sorted(verdict.rests_on) == sorted([*circular, largest_zeros])


def test_decide_needs_zeros_beyond_the_reach_and_a_circular_point():
  planted = experiment.planted_summaries(lambda padding, rf: "chance" if padding == "circular" else "perfect")
  assert experiment.decide(planted).verdict == "supported"
  short = {k: s for k, s in planted.items() if s["params"]["receptive_field"] < experiment.REACH}
  assert experiment.decide(short).verdict == "inconclusive"
  no_circular = {k: s for k, s in planted.items() if s["params"]["padding"] != "circular"}
  assert experiment.decide(no_circular).verdict == "inconclusive"


def test_quick_sweep_has_zeros_short_of_the_reach_and_every_padding_beyond_it():
  points = [p.params for p in experiment.sweep(True)]
  assert any(p["padding"] == "zeros" and p["receptive_field"] < experiment.NEAREST_REACH for p in points)
  beyond = {p["padding"] for p in points if p["receptive_field"] >= experiment.REACH}
  assert beyond == set(experiment.PADDINGS)


@pytest.mark.slow
def test_tiny_run_circular_is_exactly_at_chance(tmp_path):
  """Three steps are enough for the exact claim: whatever the weights, a circular network is right on one
  image of each test pair."""
  def tiny(quick):
    points = [p for p in experiment.sweep(True) if p.params["receptive_field"] == 13][:2]  # zeros, circular
    for p in points:
      c = p.config
      c.num_train_steps = c.eval_every_steps = 3
      c.eval_batch_size, c.eval_train_examples, c.batch_size = 64, 64, 32
      c.position.num_train, c.position.num_test = 64, 64
    return points
  results = run(dataclasses.replace(experiment.EXPERIMENT, sweep=tiny), tmp_path, quick=True, seeds=2)
  circular = results["points"]["padding-circular_rf-13"]
  assert circular["test_accuracy"]["values"] == [0.5, 0.5]
  zeros = results["points"]["padding-zeros_rf-13"]
  assert circular["shift_logit_change"]["mean"] < 1e-4 < zeros["shift_logit_change"]["mean"]
  assert (tmp_path / "report.md").exists()
  assert results["shortcut_baselines"]["padding-circular_rf-13"]["image_mean"] == 0.5
