"""Read MNIST-format IDX files (optionally gzipped), validating the header against the file.

Format (LeCun): big-endian int32 magic (0x00000801 labels, 0x00000803 images), then one int32 per
dimension, then uint8 data.
"""

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from gap_jax.errors import UserError

MAGIC = {1: 0x00000801, 3: 0x00000803}  # by number of dimensions


def read_idx(path: Path, ndim: int, how_to_get: str) -> np.ndarray:
  """The uint8 array in `path`, which must hold `ndim` dimensions; UserError if missing or corrupt."""
  if not path.is_file():
    raise UserError(f"missing data file {path}: {how_to_get}")
  try:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
  except (OSError, EOFError, zlib.error) as e:
    raise UserError(f"corrupt data file {path} ({e}): {how_to_get}") from None
  header = 4 * (1 + ndim)
  if len(raw) < header:
    raise UserError(f"corrupt data file {path}: {len(raw)} bytes is shorter than its header; {how_to_get}")
  magic, *shape = struct.unpack(f">{1 + ndim}i", raw[:header])
  if magic != MAGIC[ndim]:
    raise UserError(f"corrupt data file {path}: magic number {magic:#010x}, expected {MAGIC[ndim]:#010x}; "
                    f"{how_to_get}")
  expected = header + int(np.prod(shape))
  if len(raw) != expected:
    raise UserError(f"corrupt data file {path}: header says {shape} ({expected} bytes), file has "
                    f"{len(raw)} bytes; {how_to_get}")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)
