"""Command line: python -m gap_jax.main --config gap_jax/configs/<name>.py --workdir <dir>
[--config.<field>=<value> ...]. Bad input ends with one line on stderr and exit status 2."""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from gap_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  from gap_jax.train import train_and_evaluate  # after flag parsing: a typo fails fast, before jax loads
  try:
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if results:
    f = results["final"]
    print(f"test accuracy {f['test_accuracy']:.4f} (train {f['train_accuracy']:.4f}) after "
          f"{results['epochs']:.2f} epochs, {results['wall_time_s']:.0f} s; results in {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  app.run(main)
