"""Run by test_data_routes.py (and test_multihost.py) as one or several processes: the two data routes against
the documented batch order (gap_jax/steps.py), computed here again in numpy from the epoch's permutation.

  python tests/data_routes_check.py routes TFDS_DATA_DIR OUT_DIR [PREPROCESS EVAL_SPLIT]
      on tfds array_record files: every step's global batch of the in-memory route (its on-device gather)
      and of the streamed route (grain reads, preprocessed on device), the global batches the order defines,
      the normalisation statistics and the evaluated split of both, the ZCA fit of both (gcn_zca), and the
      parameters after a few steps of each; writes OUT_DIR/<process>.json.
  python tests/data_routes_check.py replay WORKDIR PROCESSES
      one process trains WORKDIR's config on the batches that PROCESSES processes draw (the order again, in
      numpy) and prints the largest difference from WORKDIR's parameters.
"""

import contextlib
import json
import sys
from pathlib import Path

import jax
import numpy as np
from jax.experimental import multihost_utils

from gap_jax import parallel
from gap_jax.configs import synthetic
from gap_jax.data import load_dataset, stream
from gap_jax.steps import make_gather, run_keys
from gap_jax.training_setup import build_training_setup

parallel.initialize_distributed()


def expected_indices(order_key, step: int, num_examples: int, processes: int, batch_size: int,
                     steps_per_epoch: int) -> np.ndarray:
  """The global batch of `step` as docs/data.md states it: process p takes, in the epoch's permutation's
  order, the examples of its shard [p n, (p + 1) n), n = N // P, a block of batch_size / P per step; the
  processes' blocks side by side."""
  epoch, within = divmod(step, steps_per_epoch)
  permutation = np.asarray(jax.random.permutation(jax.random.fold_in(order_key, epoch), num_examples))
  n, b = num_examples // processes, batch_size // processes
  return np.concatenate([permutation[(permutation >= p * n) & (permutation < (p + 1) * n)][within * b:(within + 1) * b]
                         for p in range(processes)])


def tiny_mnist_config(tfds_data_dir: str):
  c = synthetic.get_config()
  c.dataset, c.data_source, c.tfds_data_dir = "mnist", "tfds", tfds_data_dir
  c.preprocess_cache_dir = str(Path(tfds_data_dir).parent / "cache")  # the fits' caches, beside the data
  c.model, c.model_args.nin.blocks = "nin", (((8, 3),), ((8, 3),))
  c.batch_size, c.eval_batch_size, c.eval_train_examples = 8, 8, 16
  c.crop_padding, c.flip, c.dropout = 2, True, 0.5
  return c


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _zca_fits(cache: Path) -> list[np.ndarray]:
  """The whitening the in-memory route fitted and the one the streamed route fitted, from their caches."""
  return [np.load(next(cache.glob(pattern)))["whitening"] for pattern in ("zca-*.npz", "stream-gcn_zca-*.npz")]


@contextlib.contextmanager
def _counting_reads(read: set):
  """Adds to `read` the stored number of every training record decoded meanwhile."""
  getitem = stream.Records.__getitem__

  def counted(self, i):
    read.add(int(i if self.index is None else self.index[i]))
    return getitem(self, i)
  stream.Records.__getitem__ = counted
  try:
    yield
  finally:
    stream.Records.__getitem__ = getitem


def routes(tfds_data_dir: str, out_dir: str, method: str = "standardize", eval_split: str = "test",
           first: int = 10, last: int = 27, train_steps: int = 3):
  c = tiny_mnist_config(tfds_data_dir)
  c.preprocess, c.eval_split, c.validation_per_class = method, eval_split, 1
  full = load_dataset(c)  # the whole training set, for the expected batches
  _, order_key, step_key = run_keys(c.seed)
  runs, got = {}, {}
  read = set()  # the stored records the in-memory route's set-up decodes (after the streamed one cached the fits)
  for route in ("stream", "memory"):
    c.data_route = route
    with _counting_reads(read if route == "memory" else set()):
      run = runs[route] = build_training_setup(c)
    train_x, train_y, _, _ = run.on_device()
    batches = run.batches(order_key, first, train_x, train_y)
    if route == "memory":  # the step's own gather: what train_step trains on
      gather = jax.jit(make_gather(c.batch_size, run.steps_per_epoch, run.mesh))
      batches = (gather(*args, step) for step, args in zip(range(first, last), batches))
    got[route] = [tuple(np.asarray(multihost_utils.process_allgather(a, tiled=True)) for a in batch)
                  for _, batch in zip(range(first, last), batches)]
  run = runs["memory"]
  expected = [expected_indices(order_key, s, len(full.train), jax.process_count(), c.batch_size,
                               run.steps_per_epoch) for s in range(first, last)]
  params = {}
  for route, run in runs.items():  # a few steps of each from the same initial state
    state = run.initial_state()
    train_x, train_y, _, _ = run.on_device()
    for _, args in zip(range(train_steps), run.batches(order_key, 0, train_x, train_y)):
      state, _ = run.train_step(state, *args, step_key)
    params[route] = [np.asarray(multihost_utils.process_allgather(p, tiled=True))
                     for p in jax.tree.leaves(state.params)]
  report = {
      "processes": jax.process_count(), "devices": jax.device_count(),
      "mesh_processes": [int(p) for p in parallel.device_owners(run.mesh)[0]],
      "steps_per_epoch": run.steps_per_epoch, "shard": len(runs["memory"].data.train),
      "steps_compared": [len(got["memory"]), len(got["stream"])],
      "labels_equal": all(np.array_equal(m[1], s[1]) for m, s in zip(got["memory"], got["stream"])),
      "images_max_diff": max(_max_diff(m[0], s[0]) for m, s in zip(got["memory"], got["stream"])),
      "evaluated_max_diff": _max_diff(runs["memory"].data.test.images, runs["stream"].data.test.images),
      "evaluated_labels_equal": bool(np.array_equal(runs["memory"].data.test.labels, runs["stream"].data.test.labels)),
      # Against the one-process in-memory loader: with several processes the in-memory route fits as the streamed one.
      "images_as_defined_max_diff": max(_max_diff(m[0], full.train.images[i]) for m, i in zip(got["memory"], expected)),
      "labels_as_defined": all(np.array_equal(m[1], full.train.labels[i]) for m, i in zip(got["memory"], expected)),
      "distinct_per_step": [len(set(i.tolist())) for i in expected],
      "stats_equal": bool(np.array_equal(runs["memory"].data.mean, runs["stream"].data.mean)
                          and np.array_equal(runs["memory"].data.std, runs["stream"].data.std)),
      "params_max_diff": max(_max_diff(a, b) for a, b in zip(params["memory"], params["stream"])),
      "params_changed": any(not np.array_equal(a, np.asarray(multihost_utils.process_allgather(b, tiled=True)))
                            for a, b in zip(params["memory"], jax.tree.leaves(runs["memory"].initial_state().params))),
  }
  records = runs["stream"].data.train
  stored = lambda rows: set((rows if records.index is None else records.index[rows]).tolist())
  start, shard = parallel.process_shard(len(records))
  held = set(range(len(records.parts[0]))) - stored(np.arange(len(records)))  # the validation split, if any
  samples = set(np.unique(np.linspace(0, len(records.parts[0]) - 1, stream.SAMPLE).astype(int)).tolist())
  report.update(memory_read=len(read), stored_records=len(records.parts[0]),
                memory_read_beyond=sorted(read - stored(np.arange(start, start + shard)) - held - samples
                                          - stored(np.arange(min(c.eval_train_examples, shard)))),
                memory_read_whole_shard=stored(np.arange(start, start + shard)) <= read)
  if method == "gcn_zca":
    fits = _zca_fits(Path(c.preprocess_cache_dir))
    everyone = np.asarray(multihost_utils.process_allgather(runs["stream"].data.train.fitted["whitening"]))
    report.update(fit_max_diff=_max_diff(*fits), fit_max=float(np.abs(fits[0]).max()),
                  fit_same_on_every_process=bool((everyone == everyone[0]).all()))
  Path(out_dir, f"{jax.process_index()}.json").write_text(json.dumps(report))


def replay(workdir: str, processes: int):
  """Largest parameter difference from WORKDIR's run after training on the batches `processes` processes
  draw, and (the control) on those one process draws."""
  from gap_jax.trained import load_trained
  trained = load_trained(workdir)
  c = trained.config
  c.data_route = "stream"  # its step trains on a global batch given from the host
  run = build_training_setup(c)
  _, order_key, step_key = run_keys(c.seed)
  diffs = {}
  for name, count in (("param_diff", processes), ("one_process_order_diff", 1)):
    state = run.initial_state()
    for step in range(trained.step):
      batch = run.data.train.read(expected_indices(order_key, step, len(run.data.train), count, c.batch_size,
                                                   run.steps_per_epoch))
      state, _ = run.train_step(state, *(jax.device_put(a, parallel.batch_sharded(run.mesh))
                                         for a in (batch.images, batch.labels)), step_key)
    diffs[name] = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                      for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(trained.state.params)))
  print(json.dumps({"steps": trained.step, **diffs}))


if __name__ == "__main__":
  if sys.argv[1] == "routes":
    routes(*sys.argv[2:6])
  else:
    replay(sys.argv[2], int(sys.argv[3]))
