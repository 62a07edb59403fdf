"""Any experiment re-run with one padding in every convolution (issue 18: is padding a confound of a verdict?).

`with_padding(exp, padding)` is the same Experiment (question, rule, measure, controls, figures) whose sweep
trains every point with `config.padding = padding` and nothing else changed, so seed s of a point draws the
same data, initial weights and batches as seed s of the original point: the two result sets pair by seed.
Where a point's params name its padding (counterexample, position), the params and the key say the new one;
a point whose params say it pads nothing (counterexample's 1x1 network: "none") is left as it is. Points that
become one config under one padding (counterexample's zeros and circular twins) are trained once.

`./launch.sh experiment <name> --padding <p> [--quick]` writes results/<name>-padding-<p>[-quick]/.
"""

import dataclasses
import re

import ml_collections

from experiments.framework import Experiment, Point
from gap_jax.errors import UserError
from gap_jax.models import layers

CONFOUND = "padding_confound"  # the comparison's name on the command line (experiments/padding_confound.py)
PADDINGS = ("zeros", "circular")  # the two that keep the map's size: a re-run measures the same maps


def out_name(name: str, padding: str, quick: bool) -> str:
  """The results folder of a re-run: <name>-padding-<padding>[-quick]."""
  return f"{name}-padding-{padding}" + ("-quick" if quick else "")


def padded_point(point: Point, padding: str) -> Point:
  """`point` trained with `padding`; its params and key say so where they name a padding."""
  old = point.params.get("padding")
  if old is not None and old not in layers.PADDINGS:
    return point  # pads nothing (a 1x1 network): there is no padding to change
  config = ml_collections.ConfigDict(point.config.to_dict())
  config.padding = padding
  params, key = dict(point.params), point.key
  if old is not None:
    params["padding"] = padding
    key = re.sub(rf"padding-{old}(?=_|$)", f"padding-{padding}", key)
  return Point(key, params, config)


def padded_sweep(name: str, sweep, padding: str):
  """sweep(quick) with every point at `padding`; twins that become one config are kept once. Refused
  (UserError) where no point changes: the original results are that run."""
  def padded(quick: bool) -> list[Point]:
    originals = sweep(quick)
    if all(padded_point(p, padding).config.padding == p.config.padding for p in originals):
      raise UserError(f"{name}{' --quick' if quick else ''} already trains every point with {padding} padding: "
                      f"its own results are that run; choose another padding ({list(PADDINGS)})")
    points = {}
    for point in (padded_point(p, padding) for p in originals):
      if point.key in points and points[point.key].config.to_dict() != point.config.to_dict():
        raise ValueError(f"two points became {point.key} with different configs")
      points.setdefault(point.key, point)
    return list(points.values())
  return padded


def with_padding(exp: Experiment, padding: str) -> Experiment:
  """`exp` with every point trained at `padding`, named <name>-padding-<padding>; a padding outside PADDINGS
  is refused (UserError)."""
  if padding not in PADDINGS:
    raise UserError(f"--padding {padding!r}: choose one of {list(PADDINGS)}")
  return dataclasses.replace(
      exp, name=f"{exp.name}-padding-{padding}", sweep=padded_sweep(exp.name, exp.sweep, padding),
      question=f"{exp.question} (Re-run with {padding} padding in every convolution, same seeds and data.)")
