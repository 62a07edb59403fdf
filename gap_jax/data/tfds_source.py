"""The paper's datasets through tensorflow-datasets, read by random access into uint8 arrays.

Preparing a dataset (download, then convert to array_record files under the tfds data dir) happens once
and needs TensorFlow and network; reading the prepared files needs neither. tfds is imported only here,
when the tfds route is taken.
"""

import importlib.util
import socket
import urllib.parse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

FILE_FORMAT = "array_record"  # the format tfds.data_source reads by random access
# tfds 4.9 imports importlib_resources while preparing, but declares it only for Python < 3.9.
PREPARE_PACKAGES = ("tensorflow", "importlib_resources")
INSTALL = "pip install -e .[prepare]"
PROBE_TIMEOUT_S = 10.0  # tfds itself retries an unreachable host for minutes before it fails


def prepare_command(name: str, data_dir: str | None) -> str:
  return f"python -m gap_jax.data.prepare {name}" + (f" --data_dir {data_dir}" if data_dir else "")


def missing_packages() -> list[str]:
  return [p for p in PREPARE_PACKAGES if importlib.util.find_spec(p) is None]


def unreachable_hosts(urls: Sequence[str], timeout: float = PROBE_TIMEOUT_S) -> list[str]:
  """The hosts among `urls` that refuse a TCP connection, so a missing network fails in seconds."""
  down = []
  for host, port in sorted({(u.hostname, u.port or (443 if u.scheme == "https" else 80))
                            for u in map(urllib.parse.urlsplit, urls) if u.hostname}):
    try:
      socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
      down.append(host)
  return down


def _not_prepared(name: str, root: str, data_dir: str | None, why: str) -> UserError:
  return UserError(
      f"dataset {name!r} is not prepared in {root} and cannot be prepared here: {why}. On a machine "
      f"with internet run `{INSTALL}` then `{prepare_command(name, data_dir)}` (or train there once); "
      f"if that is another machine, copy the {name} folder it writes into {root} here "
      "(--config.tfds_data_dir chooses the folder)")


def ensure_prepared(builder: Any, name: str, data_dir: str | None) -> None:
  """Download and prepare `builder` unless it already is, with one clear error when that cannot work."""
  if builder.is_prepared():
    return
  root = str(builder.data_dir_root)
  missing = missing_packages()
  if missing:
    raise _not_prepared(name, root, data_dir, f"preparing needs {' and '.join(missing)}, which "
                        f"{'is' if len(missing) == 1 else 'are'} not installed")
  down = unreachable_hosts(list(builder.url_infos or {}))
  if down:
    raise _not_prepared(name, root, data_dir, f"no network (cannot reach {', '.join(down)})")
  print(f"preparing {name} in {root} (download and conversion, once)...")
  from tensorflow_datasets.core.download import DownloadConfig

  try:  # from the original URLs: tfds's GCS copies are TFRecord, which data_source cannot read
    builder.download_and_prepare(download_config=DownloadConfig(try_download_gcs=False))
  except OSError as e:  # requests' ConnectionError is an OSError
    raise _not_prepared(name, root, data_dir, f"the download failed ({type(e).__name__}: {e})") from None


def read_split(source: Sequence[dict], name: str, split: str) -> Split:
  """Every example of a tfds data source, decoded into (N, H, W, C) uint8 images and int32 labels."""
  n = len(source)
  if n == 0:
    raise UserError(f"split {split!r} of the prepared {name} is empty: delete it and prepare it again")
  if n >= 50_000:  # decoding runs at a few thousand images per second per core
    print(f"reading {name} {split} ({n} examples) from its prepared files...")
  first = np.asarray(source[0]["image"])
  images = np.empty((n, *first.shape), np.uint8)
  labels = np.empty(n, np.int64)
  for i in range(n):
    example = source[i]
    images[i] = example["image"]
    labels[i] = example["label"]
  return Split(images, labels.astype(np.int32))


def _unreadable(name: str, data_dir: str | None, error: Exception) -> UserError:
  from tensorflow_datasets.core import constants

  where = Path(data_dir or constants.get_default_data_dir()) / name
  return UserError(f"the prepared {name} in {where} cannot be read by random access ({error}); it was "
                   f"probably prepared by tfds.load in another format: delete {where} and run "
                   f"`{prepare_command(name, data_dir)}`")


def open_sources(name: str, splits: Sequence[str], data_dir: str | None,
                 decode_images: bool = True) -> dict[str, Sequence[dict]]:
  """The named splits of tfds dataset `name` as random-access data sources over its array_record files
  (nothing read yet), preparing it first if needed. Without `decode_images` an example's image is its encoded
  bytes: reading only the labels then costs no decoding."""
  import tensorflow_datasets as tfds  # here, so the local and synthetic routes never import it

  try:
    builder = tfds.builder(name, data_dir=data_dir, file_format=FILE_FORMAT)
  except ValueError as e:  # "File format is already set to FileFormat.TFRECORD"
    raise _unreadable(name, data_dir, e) from None
  ensure_prepared(builder, name, data_dir)
  known = set(builder.info.splits)  # empty where tfds has no metadata (tfds.testing.mock_data)
  missing = [s for s in splits if known and s not in known]
  if missing:
    raise UserError(f"the prepared {name} in {builder.data_dir} has no split {missing[0]!r}, only "
                    f"{sorted(known)}: delete that folder and run `{prepare_command(name, data_dir)}`")
  try:
    # builder_kwargs must name the format: with data_dir given, tfds.data_source leaves it unset.
    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    sources = tfds.data_source(name, split=list(splits), data_dir=data_dir, download=False, decoders=decoders,
                               builder_kwargs={"file_format": FILE_FORMAT})
  except (NotImplementedError, ValueError, KeyError) as e:
    raise _unreadable(name, data_dir, e) from None
  return dict(zip(splits, sources))


def load(name: str, splits: Sequence[str], data_dir: str | None) -> dict[str, Split]:
  """The named splits of tfds dataset `name`, read into host memory, preparing it first if needed."""
  return {split: read_split(source, name, split)
          for split, source in open_sources(name, splits, data_dir).items()}
