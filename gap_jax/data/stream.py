"""The streamed route (config.data_route = "stream"): the training set stays where it is stored and each
process reads, by random access, only the examples of its own shard (gap_jax/parallel.process_shard), its
part of each batch a few batches ahead of the step that trains on it. grain reads the records on threads and
keeps them in order; the host hands its part to jax.make_array_from_process_local_data, and the per-example
preprocessing (GCN, then ZCA or LCN: preprocess.PER_EXAMPLE), normalisation and augmentation run on device.

The batches are the in-memory route's (gap_jax/steps.py): one epoch order, drawn on device, each process
taking its shard's examples in that order. What the in-memory route fits on the whole training set first
(preprocess.FITS: standardize's channel statistics, gcn_zca's whitening) comes from one pass over the stored
records, each process summing its own 1/P of them and the processes adding their sums; a validation split is
held out, as the in-memory route holds it out, from every training label (a pass that decodes no image). Each
is cached in preprocess_cache_dir, keyed by the records' identity, so a later start, on any host, reads no
record for it.

For training sets larger than host or device memory: tfds's prepared array_record files (data_source="tfds").
A local source (generated datasets, Fashion-MNIST's IDX files) is loaded and preprocessed in host memory and
streamed from there, which saves device memory only.
"""

import dataclasses
import functools
import hashlib
import itertools
from typing import Callable, Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from gap_jax import parallel
from gap_jax.data import (Dataset, Split, cache_dir, check_prepared, load_dataset, plan, preprocess, split_off,
                          tfds_source)

READ_THREADS = 16  # records decoded at once: reading is I/O and PNG decoding, which release the GIL
PREFETCH_BATCHES = 2  # parts of batches read ahead of the step
SAMPLE = 16  # records of each part whose contents join the identity that keys the caches


@dataclasses.dataclass(frozen=True, eq=False)
class Records:
  """A training set read by random access: the stored records index[i] (all of them, in order, where index is
  None) of the concatenation of `parts`, each a tfds data source (items {"image", "label", ...}) or a Split.
  records[i] -> (image, label) as stored; read() and the streamed batches preprocess the images with
  preprocess.PER_EXAMPLE[per_example] and the arrays `fitted` for it (use them as stored where None)."""
  parts: tuple[Sequence, ...]
  image_shape: tuple[int, int, int]
  index: np.ndarray | None = None
  per_example: str | None = None
  fitted: dict = dataclasses.field(default_factory=dict)

  def __len__(self) -> int:
    return sum(len(part) for part in self.parts) if self.index is None else len(self.index)

  def _locate(self, i: int) -> tuple[Sequence, int]:
    """The part that stores example i, and its place in that part."""
    i = int(i if self.index is None else self.index[i])
    for part in self.parts[:-1]:
      if i < len(part):
        return part, i
      i -= len(part)
    return self.parts[-1], i

  def __getitem__(self, i: int) -> tuple[np.ndarray, np.int32]:
    part, i = self._locate(i)
    if isinstance(part, Split):
      return part.images[i], part.labels[i]
    example = part[i]
    return np.asarray(example["image"]), np.int32(example["label"])

  def label(self, i: int) -> np.int32:
    part, i = self._locate(i)
    return part.labels[i] if isinstance(part, Split) else np.int32(part[i]["label"])

  def read(self, indices: np.ndarray) -> Split:
    """records[indices], preprocessed, in host memory."""
    images, labels = next(iter(reader(self, indices, len(indices))))
    if self.per_example:
      images = preprocess.per_example(self.per_example, images, self.fitted)
    return Split(images, labels)


def _stack(examples) -> tuple[np.ndarray, np.ndarray]:
  return np.stack([image for image, _ in examples]), np.array([label for _, label in examples], np.int32)


def _threads(fetch: Callable[[int], object], indices: np.ndarray, batch: int, stack: Callable):
  """stack([fetch(i) for i in a batch]) for `batch` indices at a time, in order, fetched on grain's threads ahead
  of use (the last batch may be smaller)."""
  import grain  # here: the in-memory route never needs it

  return (grain.MapDataset.source(indices).map(lambda i: fetch(int(i)))
          .to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                             prefetch_buffer_size=PREFETCH_BATCHES * batch))
          .batch(batch, batch_fn=stack))


def reader(records: Records, indices: np.ndarray, batch: int):
  """(images, labels) of records[indices] as stored, `batch` at a time and in order."""
  return _threads(records.__getitem__, indices, batch, _stack)


def on_device(records: Records, mesh) -> Callable:
  """A global batch of stored images -> the batch preprocessed on the devices that hold it (as stored where
  records.per_example is None), with the fitted arrays replicated on the mesh once."""
  if not records.per_example:
    return lambda images: images
  fitted = {name: parallel.replicate(a, mesh) for name, a in records.fitted.items()}
  return functools.partial(preprocess.PER_EXAMPLE[records.per_example], **fitted)


def batches(records: Records, epoch_order, order_key, start: int, steps_per_epoch: int, per_process: int,
            mesh, batch_size: int) -> Iterator[tuple[jax.Array, jax.Array]]:
  """The global batch (images, labels) of every step from `start`: this process reads its part, the rows
  of its shard that the epoch's order (computed on device, fetched once per epoch) puts in that step, and the
  devices preprocess the batch."""
  offset, _ = parallel.process_shard(len(records))
  prepare = on_device(records, mesh)
  for epoch in itertools.count(start // steps_per_epoch):
    order = epoch_order(order_key, epoch)  # every process's devices hold their own process's order
    rows = np.asarray(order.addressable_shards[0].data)[0, :steps_per_epoch * per_process]
    first = max(start - epoch * steps_per_epoch, 0) * per_process
    for images, labels in reader(records, offset + rows[first:], per_process):
      yield (prepare(parallel.global_batch(images, mesh, batch_size)),
             parallel.global_batch(labels, mesh, batch_size))


def _my_share(n: int) -> np.ndarray:
  """This process's 1/P of the numbers 0..n-1: what it reads of a pass over the whole set."""
  p, count = jax.process_index(), jax.process_count()
  return np.arange(p * n // count, (p + 1) * n // count)


def _added_over_processes(sums: tuple) -> tuple:
  """This process's sums added to the other processes', in process order on every one (the same bits). Each
  process holds all P processes' sums for a moment: for CIFAR's ZCA, P float64 3072x3072 matrices of 75 MB."""
  if jax.process_count() == 1:
    return sums
  with jax.enable_x64(True):  # int64 counts pass 2**31 on large sets; ZCA's sums are float64
    return tuple(np.asarray(multihost_utils.process_allgather(np.asarray(s))).sum(0) for s in sums)


def _joined_over_processes(mine: np.ndarray, n: int) -> np.ndarray:
  """The processes' shares (_my_share) of n values, joined in order on every process."""
  count = jax.process_count()
  if count == 1:
    return mine
  padded = np.zeros(-(-n // count), mine.dtype)  # process_allgather takes arrays of one shape
  padded[:len(mine)] = mine
  rows = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([rows[p, :(p + 1) * n // count - p * n // count] for p in range(count)])


def _everywhere(flag: bool) -> bool:
  """Whether `flag` holds on every process: they decide together, as the passes that follow are collective."""
  if jax.process_count() == 1:
    return flag
  return bool(np.asarray(multihost_utils.process_allgather(np.int32(flag))).all())


def fit(records: Records, method: str) -> dict[str, np.ndarray]:
  """preprocess.FITS[method] fitted on the stored `records`, each process reading its own 1/P of them in chunks
  of preprocess.CHUNK (the in-memory route's chunks: with one process the fit is the same, bit for bit)."""
  chunks = (images for images, _ in reader(records, _my_share(len(records)), preprocess.CHUNK))
  return preprocess.fit(method, chunks, _added_over_processes)


def labels(records: Records) -> np.ndarray:
  """The label of every record, each process reading its own 1/P of them (of sources that decode no image)."""
  mine = _threads(records.label, _my_share(len(records)), preprocess.CHUNK, lambda ls: np.array(ls, np.int32))
  return _joined_over_processes(np.concatenate([np.zeros(0, np.int32), *mine]), len(records))


def _files(part) -> dict:
  """A tfds source's dataset, version and split, and its files (name, bytes, the records it takes); nothing for
  other sources."""
  info = getattr(part, "dataset_info", None)
  if info is None:
    return {}
  from etils import epath
  from tensorflow_datasets.core.data_sources import base

  files = [[epath.Path(f.filename).name, epath.Path(f.filename).stat().length, f.skip, f.take]
           for f in base.file_instructions(info, part.split)]
  return {"dataset": info.name, "version": str(info.version), "split": str(part.split), "files": files}


def identity(records: Records) -> dict:
  """What the caches of a training set are keyed by, found without reading the set: each part's dataset, version,
  split and files (names and sizes, not times, so a copy of the same files on another host is the same data),
  its number of records, and a digest of SAMPLE of its records spread over it."""
  parts, offset = [], 0
  for part in records.parts:
    digest = hashlib.blake2b(digest_size=16)
    for i in np.unique(np.linspace(0, len(part) - 1, SAMPLE).astype(int)):
      image, label = records[offset + i]
      digest.update(np.ascontiguousarray(image).data)
      digest.update(np.int64(label).tobytes())
    parts.append({"records": len(part), "sample": digest.hexdigest(), **_files(part)})
    offset += len(part)
  return {"parts": parts}


def _cached(config, file: str, meta: dict, expected: dict, what: str, compute: Callable[[], dict]) -> dict:
  """preprocess.cached in preprocess_cache_dir/stream-<file>.npz, used only where every process has it."""
  return preprocess.cached(cache_dir(config) / f"stream-{file}.npz",
                           {"version": preprocess.CACHE_VERSION, "file": file, **meta}, expected, compute, what,
                           agreed=_everywhere)


def _held_out(config, name: str, spec, parts: list[str], stored: Records, key: dict):
  """(training records, validation split as stored, fitted_on): the in-memory route's hold-out (split_off) of
  the stored records' numbers, by every training label (read once, cached)."""
  def read_labels():
    sources = tfds_source.open_sources(spec.tfds_name, parts, config.get("tfds_data_dir"), decode_images=False)
    return {"labels": labels(Records(tuple(sources[p] for p in parts), stored.image_shape))}

  every = _cached(config, f"labels-{name}-{'+'.join(parts)}", {"train": key},
                  {"labels": ((len(stored),), np.int32)}, "training labels", read_labels)["labels"]
  check_prepared(name, spec, "train", stored.image_shape, every)
  numbered, offset = {}, 0
  for part, source in zip(parts, stored.parts):
    numbered[part] = Split(np.arange(offset, offset + len(source)), every[offset:offset + len(source)])
    offset += len(source)
  kept, held, fitted_on = split_off(name, spec, config, "validation", parts, numbered, spec.num_classes)
  return dataclasses.replace(stored, index=kept.images), stored.read(held.images), fitted_on


def open_dataset(config) -> Dataset:
  """The dataset with its training set as Records: from tfds's array_record files, read as training needs
  them, or from a local source loaded into host memory. The evaluated split is read into memory and
  preprocessed."""
  name, spec, source, eval_split, parts, method = plan(config)
  if source == "local":
    data = load_dataset(config)
    return dataclasses.replace(data, train=Records((data.train,), data.train.image_shape))
  splits = parts + ["test"] if eval_split == "test" else parts  # validation never reads test
  sources = tfds_source.open_sources(spec.tfds_name, splits, config.get("tfds_data_dir"))
  stored = Records(tuple(sources[part] for part in parts), spec.image_shape)
  image, label = stored[0]
  check_prepared(name, spec, "train", image.shape, np.array([label]))
  key = identity(stored)
  if eval_split == "test":
    train, fitted_on = stored, "+".join(parts)
    evaluated = tfds_source.read_split(sources["test"], name, "test")
    check_prepared(name, spec, "test", evaluated.image_shape, evaluated.labels)
  else:
    train, evaluated, fitted_on = _held_out(config, name, spec, parts, stored, key)
  fitted = {}
  if method in preprocess.FITS:
    fitting = preprocess.FITS[method]
    fitted = _cached(config, f"{method}-{name}-{fitted_on}", {**fitting.settings, "train": key},
                     fitting.expected(spec.image_shape), f"{method} fit", lambda: fit(train, method))
  if method == "standardize":  # normalised inside the step
    return Dataset(name, train, evaluated, spec.num_classes, mean=fitted["mean"], std=fitted["std"],
                   eval_split=eval_split, preprocess=method)
  evaluated = Split(preprocess.per_example(method, evaluated.images, fitted), evaluated.labels)
  return Dataset(name, dataclasses.replace(train, per_example=method, fitted=fitted), evaluated, spec.num_classes,
                 *preprocess.float_stats(spec.image_shape[-1]), eval_split=eval_split, preprocess=method)
