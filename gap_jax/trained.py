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
from gap_jax.steps import make_init, run_keys


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
  like = _init(config, data, model)(jax.random.key(0))
  checkpoints = Checkpoints(workdir / "checkpoints", config.checkpoints_to_keep)
  step = step if step is not None else checkpoints.latest_step()
  if step is None:
    raise UserError(f"{workdir} has no checkpoint yet: train first, or wait for the first save")
  state = checkpoints.restore(step, like)
  checkpoints.close()
  return Trained(config, data, model, state, step)


def initial(trained: Trained) -> Trained:
  """The same run at step 0: its model with the initial weights it started from (its seed's init key), the
  null baseline for anything measured of the trained one."""
  state = _init(trained.config, trained.data, trained.model)(run_keys(trained.config.seed)[0])
  return dataclasses.replace(trained, state=state, step=0)


def _init(config, data, model):
  tx = make_optimizer(config, make_schedule(config, 1, 1))
  return make_init(model, tx, data.image_shape, parallel.make_mesh())
