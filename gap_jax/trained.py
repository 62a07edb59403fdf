"""Load what a training run left in its workdir: the config, the model and the parameters of the
latest (or a chosen) checkpoint. Analyses and experiments start here."""

import copy
import dataclasses
import json
from typing import Any

import ml_collections

from gap_jax.checkpoint import Checkpoints
from gap_jax.data import Dataset
from gap_jax.errors import UserError
from gap_jax.training_setup import build_training_setup
from gap_jax.workdir import upgraded, workdir_path


@dataclasses.dataclass
class Trained:
  config: ml_collections.ConfigDict
  # The run's data as load_trained's data_route holds them: data.test (the evaluated split) always as arrays;
  # data.train as arrays (a Split, this process's shard with several processes) for the memory route, as
  # gap_jax.data.stream.Records for the streamed one (read by index: data.train.read(indices)).
  data: Dataset
  model: Any
  state: Any  # steps.TrainState
  step: int


def load_trained(workdir, step: int | None = None, data_route: str | None = None) -> Trained:
  """The run in `workdir` at `step` (default: its latest checkpoint). data_route: how to hold its training set,
  by default as the run did; "memory" reads it into arrays (a streamed run's whole training set, preprocessed as
  it trained on it), "stream" opens it without reading it (both routes give the same examples:
  tests/test_data_routes.py)."""
  workdir = workdir_path(workdir)
  config_file = workdir / "config.json"
  if not config_file.is_file():
    raise UserError(f"{workdir} holds no training run (no config.json): pass the --workdir of a run")
  config = ml_collections.ConfigDict(upgraded(json.loads(config_file.read_text())))
  loading = config
  if data_route is not None:  # Trained.config stays the run's own
    loading = copy.deepcopy(config)
    loading.data_route = data_route
  run = build_training_setup(loading)
  checkpoints = Checkpoints(workdir / "checkpoints", config.checkpoints_to_keep)
  step = step if step is not None else checkpoints.latest_step()
  if step is None:
    raise UserError(f"{workdir} has no checkpoint yet: train first, or wait for the first save")
  state = checkpoints.restore(step, run.initial_state())
  checkpoints.close()
  return Trained(config, run.data, run.model, state, step)


def initial(trained: Trained) -> Trained:
  """The same run at step 0: its model with the initial weights it started from (its seed's init key), the
  null baseline for anything measured of the trained one."""
  state = build_training_setup(trained.config, trained.data).initial_state()
  return dataclasses.replace(trained, state=state, step=0)
