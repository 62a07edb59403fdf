"""What a run trains with, built from its config in one place: the dataset, the mesh, the model, the schedule
and optimizer, and the jitted init, train step, evaluation and epoch order (gap_jax/steps.py). The training
loop, load_trained, the benchmarks and the tests all build it here, so they all run the same computation.

Two data routes (config.data_route), one batch order (gap_jax/steps.py): "memory" holds this process's shard
of the training set in device memory and gathers each batch on device (with several processes it reads only that
shard of tfds's files); "stream" reads this process's part of each batch from the training set's files
(gap_jax/data/stream.py) and assembles the global batch on device.
"""

import dataclasses
import itertools
import json
import math
from typing import Any, Callable, Iterator

import jax
import numpy as np
import optax

from gap_jax import parallel
from gap_jax.data import Dataset, Split, load_dataset, plan, stream
from gap_jax.errors import UserError
from gap_jax.models import build_model
from gap_jax.optim import make_optimizer, make_schedule
from gap_jax.steps import (Bound, Programs, make_batch_step, make_epoch_order, make_evaluate, make_init,
                           make_train_step, run_keys)

ROUTES = ("memory", "stream")


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
  config: Any  # ml_collections.ConfigDict
  data: Dataset  # data.train: this process's shard in host memory, or the whole training set's records (stream)
  mesh: jax.sharding.Mesh
  model: Any  # a Flax module of gap_jax.models
  steps_per_epoch: int
  total_steps: int
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  init: Callable  # key -> steps.TrainState
  # memory: (state, train_x, train_y, order, step_key); stream: (state, images, labels, step_key);
  # -> (state, metrics). `batches` yields the arguments between the state and the key. Both it and evaluate are
  # steps.Bound: the data's (mean, std) go in as arguments.
  train_step: Callable
  # The same step vmapped over runs (gap_jax/train.py train_together): every argument of train_step and the
  # (mean, std) stacked on a leading run axis. Traced and compiled only if called.
  train_steps_together: Callable
  evaluate: Callable  # (params, images, labels, n) -> {"loss", "accuracy"} over the first n
  epoch_order: Callable  # (order_key, epoch) -> each process's order of its shard (steps.make_epoch_order)
  scored: Split  # the first training examples (at most eval_train_examples), scored at the end

  @property
  def streamed(self) -> bool:
    return isinstance(self.data.train, stream.Records)

  def initial_state(self):
    """The state the run starts from: the initial weights of its seed's init key."""
    return self.init(run_keys(self.config.seed)[0])

  def on_device(self):
    """(train_x, train_y, test_x, test_y) as global arrays: every device holds its process's shard of the
    training set (None, None when streaming) and the whole evaluated split."""
    d = self.data
    train = (None, None) if self.streamed else (parallel.per_device(d.train.images, self.mesh),
                                                parallel.per_device(d.train.labels, self.mesh))
    return (*train, *(parallel.replicate(a, self.mesh) for a in (d.test.images, d.test.labels)))

  def scored_on_device(self):
    """(images, labels) of `scored`, replicated on every device."""
    return tuple(parallel.replicate(a, self.mesh) for a in (self.scored.images, self.scored.labels))

  def batches(self, order_key, start: int, train_x=None, train_y=None) -> Iterator[tuple]:
    """For each step from `start`, the data arguments of train_step: (train_x, train_y, the epoch's
    order), the order computed once per epoch; streaming, the step's global batch (images, labels)."""
    per_process = self.config.batch_size // jax.process_count()
    if self.streamed:
      yield from stream.batches(self.data.train, self.epoch_order, order_key, start, self.steps_per_epoch,
                                per_process, self.mesh, self.config.batch_size)
      return
    for epoch in itertools.count(start // self.steps_per_epoch):
      order = self.epoch_order(order_key, epoch)
      for _ in range(max(start - epoch * self.steps_per_epoch, 0), self.steps_per_epoch):
        yield train_x, train_y, order


def load_route(config) -> Dataset:
  """The run's data as its route takes them: loaded into host memory, or opened for streaming. With several
  processes the in-memory route opens tfds's files as the streamed route does (what is fitted on the whole
  training set comes from each process's 1/P of it, cached), and build_training_setup reads this process's shard
  alone into memory; a local source (generated data, IDX files) is loaded whole and cut."""
  route = config.get("data_route", "memory")
  if route not in ROUTES:
    raise UserError(f"unknown data_route {route!r}: choose one of {list(ROUTES)}")
  if route == "stream" or (jax.process_count() > 1 and plan(config)[2] == "tfds"):
    return stream.open_dataset(config)
  return load_dataset(config)


def build_training_setup(config, data: Dataset | None = None, mesh: jax.sharding.Mesh | None = None) -> TrainingSetup:
  """The set-up `config` describes, on `data` (default: its route's load_route(config)) and `mesh` (default:
  every device, or this thread's parallel.use_devices). With several processes the in-memory route holds this
  process's shard alone: cut from a training set in memory, or read alone from records (load_route). Refuses,
  with a UserError, a batch larger than a shard and a model that cannot take the images."""
  data = load_route(config) if data is None else data
  num_examples = len(data.train)
  start, shard = parallel.process_shard(num_examples)
  per_process = config.batch_size // jax.process_count()
  steps_per_epoch = shard // per_process
  if steps_per_epoch == 0:
    raise UserError(f"batch_size={config.batch_size} exceeds the {num_examples} training examples"
                    + (f" ({shard} per process)" if jax.process_count() > 1 else ""))
  scored = min(config.eval_train_examples, shard)
  if isinstance(data.train, Split):
    scored = Split(data.train.images[:scored], data.train.labels[:scored])
    if shard < num_examples:  # a copy, so the rest of the training set can be freed
      data = dataclasses.replace(data, train=Split(data.train.images[start:start + shard].copy(),
                                                   data.train.labels[start:start + shard].copy()))
  else:
    scored = data.train.read(np.arange(scored))
    if config.get("data_route", "memory") == "memory":  # records opened by load_route: read this shard alone
      data = dataclasses.replace(data, train=data.train.read(np.arange(start, start + shard)))
  total_steps = config.num_train_steps or math.ceil(config.num_epochs * steps_per_epoch)
  model = build_model(config, data.num_classes)
  mesh = parallel.make_mesh() if mesh is None else mesh
  schedule = make_schedule(config, total_steps, steps_per_epoch)
  tx = make_optimizer(config, schedule)
  streamed = isinstance(data.train, stream.Records)
  programs = PROGRAMS.get(
      (program_key(config, data, num_examples, steps_per_epoch, total_steps, streamed), mesh),
      lambda: _build_programs(config, model, tx, data.image_shape, mesh, num_examples, steps_per_epoch, streamed))
  stats = tuple(parallel.replicate(np.asarray(a, np.float32), mesh) for a in (data.mean, data.std))
  return TrainingSetup(
      config, data, mesh, model, steps_per_epoch, total_steps, schedule, tx, init=programs.init,
      train_step=Bound(programs.train_step, stats), train_steps_together=programs.train_steps_together,
      evaluate=Bound(programs.evaluate, stats),
      epoch_order=programs.epoch_order, scored=scored)


@dataclasses.dataclass(frozen=True)
class SetupPrograms:
  """The jitted pieces of a set-up, each traced and compiled on its first call."""
  init: Callable
  train_step: Callable
  train_steps_together: Callable
  evaluate: Callable
  epoch_order: Callable


# By program_key and mesh: the seeds of an experiment's point, a run and its load_trained, a run and its untrained
# baseline share one set. 16: a sweep's point spread over 8 devices, and the point before it.
PROGRAMS = Programs(kept=16)


def without_seed(config) -> dict:
  """The config as a dict, less the run's seed and its generated dataset's seed."""
  c = config.to_dict()
  c.pop("seed", None)
  generated = c.get(c.get("dataset"))
  if isinstance(generated, dict):
    generated.pop("seed", None)
  return c


def program_key(config, data: Dataset, num_examples: int, steps_per_epoch: int, total_steps: int,
                streamed: bool) -> str:
  """What the programs are a function of: the config less its seeds (the seed's keys and its draw of a generated
  dataset are the programs' arguments), the data's shapes and the schedule's lengths. The data's values reach
  the programs only as arguments: the images, and the normalisation (mean, std) that Bound passes."""
  return json.dumps([without_seed(config), list(data.image_shape), data.num_classes, num_examples, steps_per_epoch,
                     total_steps, streamed, jax.process_count()], sort_keys=True, default=str)


def _build_programs(config, model, tx, image_shape, mesh, num_examples: int, steps_per_epoch: int,
                    streamed: bool) -> SetupPrograms:
  _check_model_fits(model, image_shape)
  step = lambda together: (make_batch_step(model, tx, config, mesh, together) if streamed
                           else make_train_step(model, tx, config, steps_per_epoch, mesh, together))
  return SetupPrograms(
      init=make_init(model, tx, image_shape, mesh, config.cpu_kernels),
      train_step=step(False), train_steps_together=step(True),
      evaluate=make_evaluate(model, config.eval_batch_size, mesh, config.cpu_kernels),
      epoch_order=make_epoch_order(num_examples, mesh))


def _check_model_fits(model, image_shape) -> None:
  try:
    jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), np.float32))
  except (TypeError, ValueError) as e:
    raise UserError(f"the model cannot take {image_shape} images ({str(e).splitlines()[0][:200]}): "
                    "use larger images or a model with fewer poolings") from None
