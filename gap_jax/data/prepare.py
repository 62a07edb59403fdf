"""Download and prepare datasets for the tfds route, once, on a machine with internet:

  pip install -e .[prepare]            # TensorFlow: tfds needs it to convert the downloads
  python -m gap_jax.data.prepare cifar10 cifar100 svhn_cropped mnist fashion_mnist [--data_dir DIR]

Without --data_dir the data go to tfds's own folder ($TFDS_DATA_DIR, else ~/tensorflow_datasets).
Training reads the prepared files with neither TensorFlow nor network; copy the folders to machines
without internet and point --config.tfds_data_dir at them.
"""

import argparse
import sys

from gap_jax.data import tfds_source
from gap_jax.data.specs import SPECS
from gap_jax.errors import UserError

TFDS_NAMES = {name: spec.tfds_name for name, spec in SPECS.items() if spec.tfds_name}


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("datasets", nargs="+", choices=sorted(TFDS_NAMES))
  parser.add_argument("--data_dir", default=None, help="tfds data dir (default: tfds's own)")
  args = parser.parse_args(argv)
  import tensorflow_datasets as tfds

  for name in args.datasets:
    builder = tfds.builder(TFDS_NAMES[name], data_dir=args.data_dir, file_format=tfds_source.FILE_FORMAT)
    try:
      tfds_source.ensure_prepared(builder, name, args.data_dir)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
    print(f"{name}: prepared in {builder.data_dir}")


if __name__ == "__main__":
  main()
