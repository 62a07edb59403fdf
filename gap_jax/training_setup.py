"""What a run trains with, built from its config in one place: the dataset, the mesh, the model, the schedule
and optimizer, and the jitted init, train step, evaluation and epoch order (gap_jax/steps.py). The training
loop, load_trained, the benchmarks and the tests all build it here, so they all run the same computation."""

import dataclasses
import math
from typing import Any, Callable

import jax
import numpy as np
import optax

from gap_jax import parallel
from gap_jax.data import Dataset, load_dataset
from gap_jax.errors import UserError
from gap_jax.models import build_model
from gap_jax.optim import make_optimizer, make_schedule
from gap_jax.steps import make_epoch_order, make_evaluate, make_init, make_train_step, run_keys


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
  config: Any  # ml_collections.ConfigDict
  data: Dataset  # in host memory
  mesh: jax.sharding.Mesh
  model: Any  # a Flax module of gap_jax.models
  steps_per_epoch: int
  total_steps: int
  schedule: optax.Schedule
  tx: optax.GradientTransformation
  init: Callable  # key -> steps.TrainState
  train_step: Callable  # (state, train_x, train_y, order, step_key) -> (state, metrics)
  evaluate: Callable  # (params, images, labels, n) -> {"loss", "accuracy"} over the first n
  epoch_order: Callable  # (order_key, epoch) -> the epoch's permutation of the training examples

  def initial_state(self):
    """The state the run starts from: the initial weights of its seed's init key."""
    return self.init(run_keys(self.config.seed)[0])

  def on_device(self):
    """(train_x, train_y, test_x, test_y): the dataset as global arrays replicated on every device."""
    d = self.data
    return tuple(parallel.replicate(a, self.mesh)
                 for a in (d.train.images, d.train.labels, d.test.images, d.test.labels))


def build_training_setup(config, data: Dataset | None = None, mesh: jax.sharding.Mesh | None = None) -> TrainingSetup:
  """The set-up `config` describes, on `data` (default: load_dataset(config)) and `mesh` (default: every
  device). Refuses, with a UserError, a batch larger than the training set and a model that cannot take the
  images."""
  data = load_dataset(config) if data is None else data
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"batch_size={config.batch_size} exceeds the {len(data.train)} training examples")
  total_steps = config.num_train_steps or math.ceil(config.num_epochs * steps_per_epoch)
  model = build_model(config, data.num_classes)
  _check_model_fits(model, data.image_shape)
  mesh = parallel.make_mesh() if mesh is None else mesh
  schedule = make_schedule(config, total_steps, steps_per_epoch)
  tx = make_optimizer(config, schedule)
  return TrainingSetup(
      config, data, mesh, model, steps_per_epoch, total_steps, schedule, tx,
      init=make_init(model, tx, data.image_shape, mesh, config.cpu_kernels),
      train_step=make_train_step(model, tx, config, data.mean, data.std, steps_per_epoch, mesh),
      evaluate=make_evaluate(model, data.mean, data.std, config.eval_batch_size, mesh, config.cpu_kernels),
      epoch_order=make_epoch_order(len(data.train), mesh))


def _check_model_fits(model, image_shape) -> None:
  try:
    jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, *image_shape), np.float32))
  except (TypeError, ValueError) as e:
    raise UserError(f"the model cannot take {image_shape} images ({str(e).splitlines()[0][:200]}): "
                    "use larger images or a model with fewer poolings") from None
