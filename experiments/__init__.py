"""Hypothesis experiments, by name. Each module defines EXPERIMENT (experiments/framework.py);
run one with `./launch.sh experiment <name> [--quick]`."""

import importlib

NAMES = ("absent_maps", "arrangement", "counterexample", "gap_vs_fc", "gap_vs_gmp_localization", "position", "rf_coverage")


def get(name: str):
  if name not in NAMES:
    from gap_jax.errors import UserError
    raise UserError(f"unknown experiment {name!r}: choose one of {list(NAMES)}, or the flagship "
                    "why_gap_works")
  return importlib.import_module(f"experiments.{name}").EXPERIMENT
