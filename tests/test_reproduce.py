import importlib

import jax
import jax.numpy as jnp
import pytest

from experiments import reproduce
from gap_jax.data.specs import SPECS
from gap_jax.errors import UserError
from gap_jax.models import build_model
from test_data import write_fashion_mnist


@pytest.mark.parametrize("table", sorted(reproduce.TABLES))
def test_every_row_config_builds_its_model(table):
  for label, module, arg in reproduce.TABLES[table]:
    config, paper = reproduce.row_config(module, arg)
    spec = SPECS[config.dataset]
    model = build_model(config, spec.num_classes or 10)
    shape = spec.image_shape or (28, 28, 1)
    params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *shape)))
    assert sum(x.size for x in jax.tree.leaves(params)) > 0
    if module == "paper.nin_cifar10":
      assert sum(x.size for x in jax.tree.leaves(params)) == 966_986 and paper == 10.41
    if module.startswith("paper."):
      doc = importlib.import_module(f"gap_jax.configs.{module}").__doc__
      assert f"{paper}% test error" in doc and "./launch.sh train --config" in doc


@pytest.mark.slow
def test_reproduce_writes_the_table_and_reuses_finished_rows(tmp_path, monkeypatch):
  (tmp_path / "data").mkdir()
  write_fashion_mnist(tmp_path / "data", n_train=128, n_test=64)
  original = reproduce.row_config

  def tiny(module, arg):
    config, paper = original(module, arg)
    config.data_dir = str(tmp_path / "data")
    config.num_train_steps, config.batch_size, config.eval_every_steps = 2, 32, 2
    config.eval_batch_size, config.eval_train_examples = 32, 32
    return config, paper

  monkeypatch.setattr(reproduce, "row_config", tiny)
  rows = reproduce.reproduce("fashion_table5", 2, tmp_path / "runs", tmp_path / "out")
  md = (tmp_path / "out" / "fashion_table5.md").read_text()
  assert len(rows) == 3 and "| NiN (MNIST variant) + GAP | - |" in md
  assert all(len(r["errors"]) == 2 for r in rows)
  stamps = {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("results.json")}
  reproduce.reproduce("fashion_table5", 2, tmp_path / "runs", tmp_path / "out")
  assert {p: p.stat().st_mtime for p in (tmp_path / "runs").rglob("results.json")} == stamps


def test_unknown_table():
  with pytest.raises(UserError, match="unknown table 'table9'"):
    reproduce.reproduce("table9", 1, None, None)


def test_fashion_precision_rows_differ_only_in_compute_dtype():
  (fp32, _), (bf16, _) = [reproduce.row_config(m, arg) for _, m, arg in reproduce.TABLES["fashion_precision"]]
  assert (fp32.compute_dtype, bf16.compute_dtype) == ("float32", "bfloat16")
  bf16.compute_dtype = "float32"
  assert fp32.to_dict() == bf16.to_dict()


def test_a_sigterm_stops_the_table_exits_0_and_starts_no_other_run(tmp_path, monkeypatch, capsys):
  """train_and_evaluate returns None when SIGTERM stopped it (checkpoint saved): the command used to go on to the
  next run and then fail on the missing results; now it starts nothing more, keeps the finished rows, exits 0."""
  from experiments.__main__ import experiment_process
  from gap_jax import train
  from gap_jax.cpu import malloc
  finished = {"final": {"test_accuracy": 0.9}, "hardware": {"device_count": 1, "device_kind": "cpu", "cpu_count": 2},
              "epochs": 1, "wall_time_s": 1.0}
  started = []

  def train_and_evaluate(config, workdir, stop=None):  # the second run is the one the signal stops
    started.append(workdir)
    return finished if len(started) == 1 else None
  monkeypatch.setattr(train, "train_and_evaluate", train_and_evaluate)
  monkeypatch.setattr(malloc, "restart_with_settings", lambda: None)  # no re-exec inside pytest
  with pytest.raises(SystemExit) as stop, experiment_process():
    reproduce.reproduce("fashion_table5", 1, tmp_path / "runs", tmp_path / "out")
  assert stop.value.code == 0 and len(started) == 2
  assert "seed 0 unfinished" in capsys.readouterr().err
  table = (tmp_path / "out" / "fashion_table5.md").read_text()
  assert "| NiN (MNIST variant) + FC | - | 10.00" in table and "dropout" not in table
