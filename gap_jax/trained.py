"""Load what a training run left in its workdir: the config, the model and the parameters of the
latest (or a chosen) checkpoint. Analyses and experiments start here."""

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import ml_collections

from gap_jax import parallel
from gap_jax.checkpoint import Checkpoints
from gap_jax.data import Dataset, load_dataset
from gap_jax.errors import UserError
from gap_jax.models import build_model
from gap_jax.optim import make_optimizer, make_schedule
from gap_jax.steps import make_init


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  data: Dataset
  model: Any
  state: Any  # steps.TrainState
  step: int


def load_trained(workdir, step: int | None = None) -> Trained:
  workdir = Path(workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise UserError(f"{workdir} holds no training run (no config.json): pass the --workdir of a run")
  config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  data = load_dataset(config)
  model = build_model(config, data.num_classes)
  tx = make_optimizer(config, make_schedule(config, 1, 1))
  like = make_init(model, tx, data.image_shape, parallel.make_mesh())(jax.random.key(0))
  checkpoints = Checkpoints(workdir / "checkpoints", config.checkpoints_to_keep)
  step = step if step is not None else checkpoints.latest_step()
  if step is None:
    raise UserError(f"{workdir} has no checkpoint yet: train first, or wait for the first save")
  state = checkpoints.restore(step, like)
  checkpoints.close()
  return Trained(config, data, model, state, step)
