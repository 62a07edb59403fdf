"""Command line: python -m gap_jax.analysis --workdir <dir> [--step N] [--loc_examples N] ...
Writes <dir>/analysis.json and PNG figures. Bad input ends with one line on stderr and exit status 2."""

import sys

from absl import app, flags, logging

from gap_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir (config.json, checkpoints/).")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step to analyse (default: the latest).")
_LOC = flags.DEFINE_integer("loc_examples", 2000, "Test images scored for localization (first N).")
_ERF = flags.DEFINE_integer("erf_examples", 64, "Test images averaged for the effective receptive field.")
_TAU = flags.DEFINE_float("tau", 0.5, "Map statistic frac_above_tau counts locations above tau * max.")
_ON = flags.DEFINE_enum("on", "relu", ["relu", "abs"], "Sparsity measures on relu(x) or |x|.")
_MASS = flags.DEFINE_float("mass", 0.95, "Share of gradient mass that defines the effective field's size.")
flags.mark_flags_as_required(["workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)
  from gap_jax.analysis.analyze import analyze_workdir  # after flag parsing: a typo fails before jax loads
  try:
    result = analyze_workdir(_WORKDIR.value, step=_STEP.value, loc_examples=_LOC.value,
                             erf_examples=_ERF.value, tau=_TAU.value, on=_ON.value, mass=_MASS.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  loc = result["localization"]
  loc_line = "no localization"
  if "skipped" not in loc:
    loc_line = f"MaxBoxAcc {loc['max_box_acc']:.1f}, V2 {loc['max_box_acc_v2']:.1f}"
    loc_line += f", PxAP {loc['pxap']:.1f}" if "pxap" in loc else ""
  print(f"step {result['step']}: test accuracy {result['accuracy']:.4f}; {loc_line}; analysis.json and "
        f"{len(result['figures'])} figures in {_WORKDIR.value} ({result['wall_time_s']:.0f} s)")


if __name__ == "__main__":
  app.run(main)
