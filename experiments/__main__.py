"""python -m experiments <name> [--quick] [--seeds N] [--out DIR]: run one hypothesis experiment."""

import argparse
import sys
from pathlib import Path

from gap_jax.errors import UserError


def main() -> None:
  parser = argparse.ArgumentParser(prog="./launch.sh experiment")
  parser.add_argument("name")
  parser.add_argument("--quick", action="store_true", help="a reduced sweep that runs in a few minutes")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--out", type=Path, default=None, help="default: results/<name> (quick: results/<name>-quick)")
  args = parser.parse_args()
  import experiments
  from experiments.framework import run
  try:
    exp = experiments.get(args.name)
    out = args.out or Path("results") / (args.name + ("-quick" if args.quick else ""))
    run(exp, out, quick=args.quick, seeds=args.seeds)
  except (UserError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  main()
