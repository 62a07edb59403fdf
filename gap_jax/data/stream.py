"""The streamed route (config.data_route = "stream"): the training set stays where it is stored and each
process reads, by random access, only the examples of its own shard (gap_jax/parallel.process_shard), its
part of each batch a few batches ahead of the step that trains on it. grain reads the records on threads and
keeps them in order; the host hands its part to jax.make_array_from_process_local_data, and normalisation and
augmentation run on device, as in the in-memory route.

The batches are the in-memory route's (gap_jax/steps.py): one epoch order, drawn on device, each process
taking its shard's examples in that order. For training sets larger than host or device memory: tfds's
prepared array_record files (data_source="tfds"). A local source (generated datasets, Fashion-MNIST's IDX
files) is loaded into host memory and streamed from there, which saves device memory only.
"""

import dataclasses
import itertools
from typing import Iterator, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from gap_jax import parallel
from gap_jax.data import Dataset, Split, check_prepared, load_dataset, plan, preprocess, tfds_source
from gap_jax.errors import UserError

READ_THREADS = 16  # records decoded at once: reading is I/O and PNG decoding, which release the GIL
PREFETCH_BATCHES = 2  # parts of batches read ahead of the step
STATS_CHUNK = 1024  # records per histogram update in the statistics pass


@dataclasses.dataclass(frozen=True)
class Records:
  """A training set read by random access: the concatenation of `parts`, each a tfds data source (items
  {"image", "label", ...}) or a Split. records[i] -> (image, label)."""
  parts: tuple[Sequence, ...]
  image_shape: tuple[int, int, int]

  def __len__(self) -> int:
    return sum(len(part) for part in self.parts)

  def __getitem__(self, i: int) -> tuple[np.ndarray, np.int32]:
    for part in self.parts[:-1]:
      if i < len(part):
        break
      i -= len(part)
    else:
      part = self.parts[-1]
    if isinstance(part, Split):
      return part.images[i], part.labels[i]
    example = part[i]
    return np.asarray(example["image"]), np.int32(example["label"])

  def read(self, indices: np.ndarray) -> Split:
    """records[indices], in host memory."""
    images, labels = next(iter(reader(self, indices, len(indices))))
    return Split(images, labels)


def _stack(examples) -> tuple[np.ndarray, np.ndarray]:
  return np.stack([image for image, _ in examples]), np.array([label for _, label in examples], np.int32)


def reader(records: Records, indices: np.ndarray, batch: int):
  """(images, labels) of records[indices], `batch` at a time and in order, read on grain's threads ahead of
  use (the last batch may be smaller)."""
  import grain  # here: the in-memory route never needs it

  return (grain.MapDataset.source(indices).map(lambda i: records[int(i)])
          .to_iter_dataset(grain.ReadOptions(num_threads=READ_THREADS,
                                             prefetch_buffer_size=PREFETCH_BATCHES * batch))
          .batch(batch, batch_fn=_stack))


def batches(records: Records, epoch_order, order_key, start: int, steps_per_epoch: int, per_process: int,
            mesh, batch_size: int) -> Iterator[tuple[jax.Array, jax.Array]]:
  """The global batch (images, labels) of every step from `start`: this process reads its part, the rows
  of its shard that the epoch's order (computed on device, fetched once per epoch) puts in that step."""
  offset, _ = parallel.process_shard(len(records))
  for epoch in itertools.count(start // steps_per_epoch):
    order = epoch_order(order_key, epoch)  # every process's devices hold their own process's order
    rows = np.asarray(order.addressable_shards[0].data)[0, :steps_per_epoch * per_process]
    first = max(start - epoch * steps_per_epoch, 0) * per_process
    for images, labels in reader(records, offset + rows[first:], per_process):
      yield parallel.global_batch(images, mesh, batch_size), parallel.global_batch(labels, mesh, batch_size)


def channel_stats(records: Records) -> tuple[np.ndarray, np.ndarray]:
  """The per-channel mean and std of the whole training set, as preprocess.standardize computes them, each
  process reading only its own 1/P of the records: exact integer histograms, added over the processes."""
  n, p, count = len(records), jax.process_index(), jax.process_count()
  hist = np.zeros((records.image_shape[-1], 256), np.int64)
  for images, _ in reader(records, np.arange(p * n // count, (p + 1) * n // count), STATS_CHUNK):
    hist += preprocess.channel_histogram(images)
  with jax.enable_x64(True):  # counts pass 2**31 on large sets
    hist = np.asarray(multihost_utils.process_allgather(hist)).sum(0)
  return preprocess.histogram_stats(hist)


def open_dataset(config) -> Dataset:
  """The dataset with its training set as Records: from tfds's array_record files, read as training needs
  them, or from a local source loaded into host memory. The evaluated split is read into memory."""
  name, spec, source, eval_split, parts, method = plan(config)
  if source == "local":
    data = load_dataset(config)
    return dataclasses.replace(data, train=Records((data.train,), data.train.image_shape))
  if eval_split != "test":
    raise UserError(f"data_route='stream' evaluates on the test split: holding out a validation split needs "
                    f"every training label first; use --config.data_route=memory for eval_split={eval_split!r}")
  if method != "standardize":
    raise UserError(f"data_route='stream' trains on the images as stored, but preprocess {method!r} "
                    "transforms the whole training set on the host first: set --config.preprocess=standardize "
                    "or use --config.data_route=memory")
  sources = tfds_source.open_sources(spec.tfds_name, parts + ["test"], config.get("tfds_data_dir"))
  test = tfds_source.read_split(sources["test"], name, "test")
  check_prepared(name, spec, "test", test.image_shape, test.labels)
  records = Records(tuple(sources[part] for part in parts), spec.image_shape)
  image, label = records[0]
  check_prepared(name, spec, "train", image.shape, np.array([label]))
  mean, std = channel_stats(records)
  return Dataset(name, records, test, spec.num_classes, mean=mean, std=std, eval_split="test",
                 preprocess=method)
