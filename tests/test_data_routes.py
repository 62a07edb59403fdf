"""The two data routes (config.data_route): the in-memory route holds each process's shard of the training
set on device, the streamed route reads each process's part of every batch from the stored files through
grain; both must train on the batches the documented order defines (gap_jax/steps.py), with one process
and with two processes on localhost."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from data_routes_check import expected_indices, tiny_mnist_config
from gap_jax.data import DATASETS, load_dataset, preprocess, stream
from gap_jax.errors import UserError
from gap_jax.steps import make_gather, run_keys
from gap_jax.trained import load_trained
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


def test_an_unknown_data_route_is_refused(tiny_config):
  tiny_config.data_route = "disk"
  with pytest.raises(UserError, match="unknown data_route 'disk'"):
    build_training_setup(tiny_config)


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
@pytest.mark.parametrize("processes,method,eval_split", [(1, "standardize", "test"), (2, "standardize", "test"),
                                                         (2, "gcn_zca", "validation")])
def test_routes_agree_on_array_record_files(tmp_path, processes, method, eval_split):
  """From tfds's array_record files, 17 steps across two epoch boundaries: the streamed reads equal the
  in-memory gather and the batches the order defines; both routes fit the same normalisation and reach
  the same parameters. With two processes each holds a shard of 50 of the 101 examples, and the in-memory route
  reads only its own shard of the records (counted). With gcn_zca and a
  held-out validation split, two processes add up their ZCA sums and join their labels: the fit is the
  in-memory one to float32 rounding and the same on both, the batches and parameters the same to rounding."""
  prepared_mnist(tmp_path / "tfds")
  (tmp_path / "out").mkdir()
  run_check(["routes", tmp_path / "tfds", tmp_path / "out", method, eval_split], processes, devices=2)
  reports = [json.loads((tmp_path / "out" / f"{p}.json").read_text()) for p in range(processes)]
  n = 101 - 10 * (eval_split == "validation")
  for r in reports:
    assert r["processes"] == processes and r["devices"] == 2 * processes
    assert r["mesh_processes"] == sorted(r["mesh_processes"])  # the processes' parts side by side, in order
    assert r["shard"] == n // processes and r["steps_per_epoch"] == n // processes // (8 // processes)
    assert r["steps_compared"] == [17, 17]
    assert r["labels_equal"] and r["labels_as_defined"]
    assert r["evaluated_labels_equal"]
    assert r["distinct_per_step"] == [8] * 17  # no example twice in a batch
    assert r["stats_equal"] and r["params_changed"]
    if processes > 1:
      # The in-memory route decodes its own shard's records, and beyond them only the first examples it scores,
      # the evaluated validation split and the few that key the caches: not the other processes' shards.
      assert r["memory_read_whole_shard"] and r["memory_read_beyond"] == []
      assert r["memory_read"] < r["stored_records"]
    if method == "standardize":
      assert r["images_max_diff"] == r["evaluated_max_diff"] == r["params_max_diff"] == 0
      assert r["images_as_defined_max_diff"] == 0
    else:
      assert r["images_as_defined_max_diff"] <= 1e-4
      assert r["fit_same_on_every_process"]
      assert r["fit_max_diff"] <= np.finfo(np.float32).eps * r["fit_max"]
      assert r["images_max_diff"] <= 1e-4 and r["evaluated_max_diff"] <= 1e-4 and r["params_max_diff"] <= 1e-6

def prepared(data_dir: Path, name: str, config, n: int = 101) -> dict:
  """Genuine array_record files of `name` with n training examples (and 10 extra for svhn_cropped), and the
  config that reads them; returns {split: (images, labels)} as written."""
  shape = DATASETS[name].image_shape
  train = balanced(n // 10 + 1, 10, shape)
  splits = {"train": (train[0][:n], train[1][:n]), "test": balanced(2, 10, shape, seed=1)}
  if name == "svhn_cropped":
    splits["extra"] = balanced(1, 10, shape, seed=2)
    config.train_extra = True
  write_prepared(data_dir / "tfds", name, splits)
  config.dataset, config.tfds_data_dir = name, str(data_dir / "tfds")
  return splits


def first_steps(run, order_key, first: int = 10, last: int = 27) -> list:
  """The global batches (images, labels) of steps first..last-1 as the run's route gives them to its step."""
  train_x, train_y, _, _ = run.on_device()
  batches = run.batches(order_key, first, train_x, train_y)
  if not run.streamed:  # the step's own gather
    gather = jax.jit(make_gather(run.config.batch_size, run.steps_per_epoch, run.mesh))
    batches = (gather(*args, step) for step, args in zip(range(first, last), batches))
  return [jax.device_get(batch) for _, batch in zip(range(first, last), batches)]


EPS = float(np.finfo(np.float32).eps)


@pytest.mark.parametrize("name,method,eval_split", [
    ("mnist", "gcn_zca", "test"), ("mnist", "standardize", "validation"), ("svhn_cropped", "lcn", "validation")])
def test_routes_give_the_same_preprocessed_batches(tmp_path, monkeypatch, name, method, eval_split):
  """The paper's recipes streamed: 17 steps across two epoch boundaries, one process. The ZCA fitted from the
  streamed pass is the in-memory fit bit for bit and the evaluated split is the same; the training batches are
  the same examples, and the same numbers to float32 rounding: GCN and LCN of a batch are bit-equal here,
  whitening a batch of 8 sums its dot products in another order than whitening the set 2048 rows at a time
  (measured at most 4.6e-7 of the sum of the terms' magnitudes, 2e-5 on values up to 0.9)."""
  monkeypatch.setattr(preprocess, "CHUNK", 32)  # several chunks: the fit adds chunks' sums in both routes
  c = tiny_mnist_config(str(tmp_path / "tfds"))
  written = prepared(tmp_path, name, c)
  c.preprocess, c.eval_split, c.validation_per_class = method, eval_split, 1
  _, order_key, _ = run_keys(c.seed)
  runs, got = {}, {}
  for route in ("memory", "stream"):
    c.data_route = route
    runs[route] = build_training_setup(c)
    got[route] = first_steps(runs[route], order_key)
  memory, streamed = runs["memory"], runs["stream"]
  assert streamed.streamed and streamed.data.train.per_example == (None if method == "standardize" else method)
  assert len(memory.data.train) == len(streamed.data.train) == 101 + 10 * c.train_extra - 10 * (eval_split != "test")
  for data in (memory.data, streamed.data):
    assert data.eval_split == eval_split and len(data.test) == (20 if eval_split == "test" else 10)
  np.testing.assert_array_equal(memory.data.test.images, streamed.data.test.images)
  np.testing.assert_array_equal(memory.data.test.labels, streamed.data.test.labels)
  np.testing.assert_array_equal(memory.data.mean, streamed.data.mean)
  np.testing.assert_array_equal(memory.data.std, streamed.data.std)
  if method == "gcn_zca":
    fits = [np.load(next((tmp_path / "cache").glob(pattern))) for pattern in ("zca-*.npz", "stream-gcn_zca-*.npz")]
    for key in ("mean", "whitening"):
      np.testing.assert_array_equal(fits[0][key], fits[1][key])
  steps = [10 + i for i in range(len(got["memory"]))]
  for step, (m, s) in zip(steps, zip(got["memory"], got["stream"])):
    np.testing.assert_array_equal(m[1], s[1])
    assert m[0].dtype == s[0].dtype == (np.uint8 if method == "standardize" else np.float32)
    if method == "gcn_zca":  # the whitening's rounding bound: a few float32 eps of the sum of |terms|
      idx = expected_indices(order_key, step, 101, 1, c.batch_size, memory.steps_per_epoch)
      gcn = preprocess.gcn(written["train"][0][idx], preprocess.GCN_SCALE).reshape(len(idx), -1)
      terms = np.abs(gcn - fits[0]["mean"]) @ np.abs(fits[0]["whitening"])
      assert np.all(np.abs(m[0] - s[0]).reshape(len(idx), -1) <= 16 * EPS * terms), step
      fitted = {key: fits[0][key] for key in ("mean", "whitening")}
      np.testing.assert_allclose(m[0], preprocess.per_example(method, written["train"][0][idx], fitted),
                                 rtol=0, atol=1e-4)  # and the batch is the examples the order names
    else:
      np.testing.assert_allclose(m[0], s[0], rtol=0, atol=1e-5)
  np.testing.assert_allclose(memory.scored.images, streamed.scored.images, rtol=0, atol=1e-4)


def counting_reads(monkeypatch) -> dict[str, list]:
  """Every record the streamed route reads, image and label (`images`) or label only (`labels`), and every
  pass over a part of the set (`passes`)."""
  reads = {"images": [], "labels": [], "passes": []}
  get, label, threads = stream.Records.__getitem__, stream.Records.label, stream._threads
  monkeypatch.setattr(stream.Records, "__getitem__", lambda self, i: reads["images"].append(i) or get(self, i))
  monkeypatch.setattr(stream.Records, "label", lambda self, i: reads["labels"].append(i) or label(self, i))
  monkeypatch.setattr(stream, "_threads", lambda fetch, indices, *a: reads["passes"].append(len(indices))
                      or threads(fetch, indices, *a))
  return reads


@pytest.mark.parametrize("method,eval_split", [("standardize", "test"), ("gcn_zca", "validation")])
def test_a_second_start_reads_no_training_record_for_the_fit(tmp_path, monkeypatch, method, eval_split):
  """The fit (and, holding out a validation split, every label) is cached by the data's identity: a second start
  reads only the records of that identity and the validation split, a changed dataset is read and fitted again."""
  c = tiny_mnist_config(str(tmp_path / "tfds"))
  prepared(tmp_path, "mnist", c)
  c.update(data_route="stream", preprocess=method, eval_split=eval_split, validation_per_class=1)
  opened = []
  for start in range(2):
    reads = counting_reads(monkeypatch)
    opened.append((stream.open_dataset(c), reads))
    monkeypatch.undo()
  (first, first_reads), (second, second_reads) = opened
  held = len(first.test) if eval_split == "validation" else 0
  assert len(first_reads["labels"]) == (101 if held else 0)  # every label once
  assert first_reads["passes"] == ([101, held] if held else []) + [len(first.train)]  # labels, validation, fit
  assert second_reads["labels"] == [] and second_reads["passes"] == ([held] if held else [])
  assert len(second_reads["images"]) == 1 + stream.SAMPLE + held  # the shape check, the identity, validation
  assert len(first_reads["images"]) == len(second_reads["images"]) + len(first.train)  # plus the fit's pass
  for a, b in zip((first.mean, first.std, *first.train.fitted.values()), (second.mean, second.std,
                                                                          *second.train.fitted.values())):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(first.test.images, second.test.images)
  if held:  # the same examples held out
    np.testing.assert_array_equal(first.train.index, second.train.index)
  shutil.rmtree(tmp_path / "tfds")  # other images in the same place: another dataset
  prepared(tmp_path, "mnist", c, n=102)
  reads = counting_reads(monkeypatch)
  third = stream.open_dataset(c)
  assert len(reads["images"]) >= len(third.train)
  assert not np.array_equal(third.mean if method == "standardize" else third.train.fitted["whitening"],
                            first.mean if method == "standardize" else first.train.fitted["whitening"])


def test_load_trained_holds_a_streamed_training_set_as_asked(tmp_path):
  """A streamed run loads as it trained, its training set as Records (nothing read), or in memory when asked:
  the same examples, preprocessed as they were trained on."""
  from gap_jax.train import train_and_evaluate
  c = tiny_mnist_config(str(tmp_path / "tfds"))
  prepared(tmp_path, "mnist", c)
  c.update(data_route="stream", preprocess="lcn", num_train_steps=2, eval_every_steps=2)
  assert train_and_evaluate(c, tmp_path / "run", stop_after_steps=1) is None  # a checkpoint, no evaluation
  streamed, in_memory = load_trained(tmp_path / "run"), load_trained(tmp_path / "run", data_route="memory")
  assert isinstance(streamed.data.train, stream.Records) and streamed.config.data_route == "stream"
  assert in_memory.config.data_route == "stream"  # the run's config, whatever it was loaded with
  everything = streamed.data.train.read(np.arange(len(streamed.data.train)))
  np.testing.assert_array_equal(everything.labels, in_memory.data.train.labels)
  np.testing.assert_allclose(everything.images, in_memory.data.train.images, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(streamed.data.test.images, in_memory.data.test.images)
  assert streamed.step == in_memory.step == 1
  for a, b in zip(jax.tree.leaves(streamed.state), jax.tree.leaves(in_memory.state)):
    np.testing.assert_array_equal(a, b)
