"""Command line: python -m gap_jax.main --config gap_jax/configs/<name>.py --workdir <dir>
[--config.<field>=<value> ...] [--fresh_start | --allow_config_change].

Bad input (unknown flag or config field, wrong type, impossible value, missing data) ends with one line
on stderr and exit status 2; a bug in a config file ends with its traceback; SIGTERM saves a checkpoint
and exits 0 so a scheduler can requeue. The resolved config is printed before training starts.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags
from ml_collections.config_flags.config_flags import ConfigFileFlagParser

from gap_jax.errors import UserError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
_FRESH = flags.DEFINE_bool("fresh_start", False,
                           "If the workdir holds a run with another config, move it to previous/ and start over.")
_ALLOW_CHANGE = flags.DEFINE_bool("allow_config_change", False,
                                  "If the workdir holds a run with another config, continue from its checkpoints.")


def fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, with every mistake on the command line reported as one line instead of a traceback."""
  try:
    rest = flags.FLAGS(argv)
    for name in ("config", "workdir"):
      if flags.FLAGS[name].value is None:
        fail(f"--{name} is required: ./launch.sh train --config gap_jax/configs/<name>.py --workdir <dir>")
    _CONFIG.value.lock()
  except UserError as e:  # raised by a config file for a bad argument (e.g. an unknown row)
    fail(str(e))
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    # A bug in the config file's own code: its traceback says where. (ml_collections turns any OSError there,
    # a missing file included, into one raised later: that is reported as one line.)
    if not isinstance(e, OSError) and raised_in_config_file(e):
      raise
    text = " ".join(str(e).split())
    if isinstance(e, (AttributeError, KeyError)):
      text = unknown_field_message(text.strip(chr(34) + chr(39)), argv)
    fail(text)
  return rest


def raised_in_config_file(e: BaseException | None) -> bool:
  """Whether `e`, or an exception it was raised from, came from running the config file's get_config (not
  from the overrides on the command line, which are applied after it returned)."""
  while e is not None:
    tb = e.__traceback__
    while tb is not None:
      if tb.tb_frame.f_code is ConfigFileFlagParser.parse.__code__:
        return True
      tb = tb.tb_next
    e = e.__cause__ or e.__context__
  return False


def unknown_field_message(key: str, argv: list[str]) -> str:
  """Names the whole override path that holds the unknown `key`, where one does."""
  paths = [a.split("=")[0][len("--config."):] for a in argv if a.startswith("--config.")]
  path = next((p for p in paths if key in p.split(".")), key)
  hint = ("each head and model has its own section: head_args.<head>.<field>, model_args.<model>.<field>; "
          if path.split(".")[0] in ("head_args", "model_args") else "")
  return f"unknown config field {path} ({hint}the fields are in gap_jax/configs/default.py)"


def print_config(config) -> None:
  """The resolved config, one `field = value` a line; of head_args and model_args only the chosen head's and
  model's sections (any other must be at its defaults, or the run is refused)."""
  from gap_jax.workdir import flatten
  chosen = {"head_args": config.head, "model_args": config.model}
  print("config:")
  for path, value in sorted(flatten(config.to_dict()).items()):
    section, _, rest = path.partition(".")
    if section not in chosen or rest.split(".")[0] == chosen[section]:
      print(f"  {path} = {value!r}")


def main(argv) -> None:
  if len(argv) > 1:
    fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if _FRESH.value and _ALLOW_CHANGE.value:
    fail("--fresh_start and --allow_config_change exclude each other: pick one")
  from gap_jax.workdir import workdir_path
  try:
    workdir_path(_WORKDIR.value)  # a scheme that cannot work (or its missing backend) fails before jax loads
  except UserError as e:
    fail(str(e))
  # orbax logs every checkpoint step at INFO, and a failed background write as a traceback at ERROR;
  # we report such failures ourselves, in one line.
  logging.set_verbosity(logging.FATAL)
  from gap_jax.cpu import malloc  # after flag parsing: a typo fails fast, before jax loads
  malloc.restart_with_settings()
  from gap_jax import compilation_cache, parallel
  parallel.initialize_distributed()
  compilation_cache.enable()
  from gap_jax.train import train_and_evaluate
  on_change = "fresh" if _FRESH.value else "override" if _ALLOW_CHANGE.value else "refuse"
  if parallel.is_primary():
    print_config(_CONFIG.value)
  try:
    results = train_and_evaluate(_CONFIG.value, _WORKDIR.value, on_config_change=on_change)
  except UserError as e:
    fail(str(e))
  if results is None:
    print(f"stopped early with a checkpoint in {_WORKDIR.value}; run the same command to resume")
    return
  f = results["final"]
  print(f"test accuracy {f['test_accuracy']:.4f} (train {f['train_accuracy']:.4f}) after "
        f"{results['epochs']:.2f} epochs, {results['wall_time_s']:.0f} s; results in {_WORKDIR.value}/results.json")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
