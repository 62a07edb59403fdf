"""The two data routes (config.data_route): the in-memory route holds each process's shard of the training
set on device, the streamed route reads each process's part of every batch from the stored files through
grain; both must train on the batches the documented order defines (gap_jax/steps.py), with one process
and with two processes on localhost."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from data_routes_check import expected_indices
from gap_jax.data import load_dataset
from gap_jax.errors import UserError
from gap_jax.steps import make_gather, run_keys
from gap_jax.training_setup import build_training_setup
from test_multihost import free_port
from test_tfds import balanced, write_prepared

ROOT = Path(__file__).parents[1]
CHECK = ROOT / "tests" / "data_routes_check.py"


def test_both_routes_give_the_batches_the_order_defines(tiny_config):
  """One process: the in-memory gather and the streamed reads give, step for step across an epoch boundary,
  the examples of the epoch's permutation cut into consecutive batches (the batches of every run before
  the routes existed)."""
  c = tiny_config
  c.synthetic.num_train, c.batch_size = 100, 16  # 6 steps per epoch; 4 examples left over each epoch
  full = load_dataset(c)
  _, order_key, _ = run_keys(c.seed)
  got = {}
  for route in ("memory", "stream"):
    c.data_route = route
    run = build_training_setup(c)  # its route's own loading
    assert run.streamed == (route == "stream")
    train_x, train_y, _, _ = run.on_device()
    batches = run.batches(order_key, 4, train_x, train_y)
    if route == "memory":
      gather = jax.jit(make_gather(c.batch_size, run.steps_per_epoch, run.mesh))
      batches = (gather(*args, step) for step, args in zip(range(4, 14), batches))
    got[route] = [jax.device_get(b) for _, b in zip(range(4, 14), batches)]
  for step, (memory, streamed) in enumerate(zip(got["memory"], got["stream"]), start=4):
    epoch, within = divmod(step, 6)
    idx = np.asarray(jax.random.permutation(jax.random.fold_in(order_key, epoch), 100))[within * 16:(within + 1) * 16]
    np.testing.assert_array_equal(idx, expected_indices(order_key, step, 100, 1, 16, 6))
    for images, labels in (memory, streamed):
      np.testing.assert_array_equal(images, full.train.images[idx])
      np.testing.assert_array_equal(labels, full.train.labels[idx])


def test_the_stream_route_refuses_what_it_cannot_stream(tiny_config):
  c = tiny_config
  c.data_route = "disk"
  with pytest.raises(UserError, match="unknown data_route 'disk'"):
    build_training_setup(c)
  c.data_route, c.dataset, c.data_source = "stream", "cifar10", "tfds"
  with pytest.raises(UserError, match="preprocess 'gcn_zca' transforms the whole training set"):
    build_training_setup(c)  # refused before any file is opened
  c.preprocess, c.eval_split = "standardize", "validation"
  with pytest.raises(UserError, match="evaluates on the test split"):
    build_training_setup(c)


def prepared_mnist(data_dir: Path, num_train: int = 101) -> None:
  """Genuine array_record files of a small MNIST-shaped dataset (an odd count: with two processes one example
  belongs to no shard)."""
  train, test = balanced(num_train // 10 + 1, 10, (28, 28, 1)), balanced(2, 10, (28, 28, 1), seed=1)
  write_prepared(data_dir, "mnist", {"train": (train[0][:num_train], train[1][:num_train]), "test": test})


def run_check(args, processes: int, devices: int) -> list[subprocess.CompletedProcess]:
  coordinator = f"localhost:{free_port()}"
  procs = []
  for pid in range(processes):
    env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices))
    if processes > 1:
      env.update(GAP_JAX_DISTRIBUTED="1", JAX_COORDINATOR_ADDRESS=coordinator,
                 GAP_JAX_NUM_PROCESSES=str(processes), GAP_JAX_PROCESS_ID=str(pid))
    procs.append(subprocess.Popen([sys.executable, str(CHECK), *map(str, args)], env=env, cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE))
  try:
    outs = [p.communicate(timeout=600) for p in procs]
  finally:  # a hung process (one failed before a collective) must not outlive the test
    for p in procs:
      p.kill()
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_routes_agree_on_array_record_files(tmp_path, processes):
  """From tfds's array_record files, 17 steps across two epoch boundaries: the streamed reads equal the
  in-memory gather and the batches the order defines; both routes fit the same normalisation and reach
  the same parameters. With two processes each holds a shard of 50 of the 101 examples."""
  prepared_mnist(tmp_path / "tfds")
  (tmp_path / "out").mkdir()
  run_check(["routes", tmp_path / "tfds", tmp_path / "out"], processes, devices=2)
  reports = [json.loads((tmp_path / "out" / f"{p}.json").read_text()) for p in range(processes)]
  for r in reports:
    assert r["processes"] == processes and r["devices"] == 2 * processes
    assert r["mesh_processes"] == sorted(r["mesh_processes"])  # the processes' parts side by side, in order
    assert r["shard"] == 101 // processes and r["steps_per_epoch"] == 101 // 8
    assert r["steps_compared"] == [17, 17]
    assert r["routes_equal"] and r["images_as_defined"] and r["labels_as_defined"]
    assert r["distinct_per_step"] == [8] * 17  # no example twice in a batch
    assert r["stats_equal"] and r["params_equal"] and r["params_changed"]
