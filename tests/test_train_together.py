"""Seeds trained together (gap_jax/train.py train_together: one jax.vmap of the step over stacked states) train
each run as it would have trained alone, and leave each run's workdir as a run of its own leaves it."""

import json

import jax
import numpy as np
import pytest

from gap_jax.train import train_and_evaluate, train_together
from gap_jax.trained import load_trained


def seeded(config, seed):
  c = config.copy_and_resolve_references()
  c.seed = c.synthetic.seed = seed  # each run its own weights, batch order and draw of the data
  return c


def params_of(workdir):
  return load_trained(workdir).state.params


def assert_same_params(a, b, rtol=1e-4, atol=1e-5):
  """Equal up to float rounding: vmap batches the seeds' convolutions into one, the same sums in another order."""
  flat = lambda p: np.concatenate([np.ravel(v) for v in jax.tree.leaves(p)])
  np.testing.assert_allclose(flat(a), flat(b), rtol=rtol, atol=atol)


def test_together_trains_each_seed_as_alone(tmp_path, tiny_config):
  configs = [seeded(tiny_config, s) for s in (0, 1)]
  alone = [train_and_evaluate(c, tmp_path / f"alone{s}") for s, c in enumerate(configs)]
  together = train_together(configs, [tmp_path / f"together{s}" for s in range(2)])
  assert [r["trained_together"] for r in together] == [2, 2]
  for s in range(2):
    assert_same_params(params_of(tmp_path / f"together{s}"), params_of(tmp_path / f"alone{s}"))
    np.testing.assert_allclose(together[s]["final"]["test_loss"], alone[s]["final"]["test_loss"], rtol=1e-4)
    assert together[s]["seed"] == s
    on_disk = json.loads((tmp_path / f"together{s}" / "results.json").read_text())
    assert on_disk["final"] == together[s]["final"]
    # Each run's own metrics: one line per logged step, the same steps a run alone logs.
    lines = lambda d: [json.loads(x)["step"] for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert lines(tmp_path / f"together{s}") == lines(tmp_path / f"alone{s}")
  # The seeds differ: different draws, weights and orders make different networks.
  with pytest.raises(AssertionError):
    assert_same_params(params_of(tmp_path / "together0"), params_of(tmp_path / "together1"))


def test_together_resumes_bit_identical(tmp_path, tiny_config):
  configs = [seeded(tiny_config, s) for s in (0, 1)]
  straight = train_together(configs, [tmp_path / f"straight{s}" for s in range(2)])
  resumed_dirs = [tmp_path / f"resumed{s}" for s in range(2)]
  assert train_together(configs, resumed_dirs, stop_after_steps=3) == [None, None]
  resumed = train_together(configs, resumed_dirs)
  for s in range(2):
    assert resumed[s]["resumed_from_step"] == 3
    assert resumed[s]["final"] == straight[s]["final"]
    assert_same_params(params_of(resumed_dirs[s]), params_of(tmp_path / f"straight{s}"), rtol=0, atol=0)


def test_runs_at_different_steps_train_one_after_another(tmp_path, tiny_config):
  configs = [seeded(tiny_config, s) for s in (0, 1)]
  dirs = [tmp_path / f"run{s}" for s in range(2)]
  assert train_and_evaluate(configs[0], dirs[0], stop_after_steps=3) is None  # run 0 at step 3, run 1 at 0
  results = train_together(configs, dirs)
  assert [r["trained_together"] for r in results] == [1, 1]
  assert [r["resumed_from_step"] for r in results] == [3, 0]
  alone = train_and_evaluate(configs[1], tmp_path / "alone1")
  assert results[1]["final"] == alone["final"]


def test_together_refuses_configs_that_differ_beyond_the_seed(tmp_path, tiny_config):
  other = seeded(tiny_config, 1)
  other.learning_rate *= 2
  with pytest.raises(ValueError, match="seed alone"):
    train_together([seeded(tiny_config, 0), other], [tmp_path / "a", tmp_path / "b"])
  assert not (tmp_path / "a").exists()  # refused before anything is written


@pytest.mark.slow  # four runs
def test_streamed_seeds_together_train_as_alone(tmp_path):
  """The streamed route's batches (a new one each step) stack as the in-memory route's training set does."""
  from data_routes_check import tiny_mnist_config
  from test_data_routes import prepared
  c = tiny_mnist_config(str(tmp_path / "tfds"))
  prepared(tmp_path, "mnist", c)
  c.update(data_route="stream", num_train_steps=4, eval_every_steps=4)
  configs = [c.copy_and_resolve_references() for _ in range(2)]
  configs[1].seed = 1
  together = train_together(configs, [tmp_path / f"together{s}" for s in range(2)])
  assert [r["trained_together"] for r in together] == [2, 2]
  for s, config in enumerate(configs):
    alone = train_and_evaluate(config, tmp_path / f"alone{s}")
    np.testing.assert_allclose(together[s]["final"]["test_loss"], alone["final"]["test_loss"], rtol=1e-4)
    assert_same_params(params_of(tmp_path / f"together{s}"), params_of(tmp_path / f"alone{s}"))
