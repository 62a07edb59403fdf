"""`train_and_evaluate(config, workdir)`: the one training loop that every config, test and experiment
calls. It resumes from the workdir's latest checkpoint, logs metrics (metrics.jsonl, TensorBoard) and
writes results.json when training is complete."""

import json
import math
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from gap_jax import parallel
from gap_jax.checkpoint import Checkpoints
from gap_jax.data import load_dataset
from gap_jax.errors import UserError
from gap_jax.metric_writer import MetricWriter
from gap_jax.models import build_model
from gap_jax.optim import make_optimizer, make_schedule
from gap_jax.steps import make_epoch_order, make_evaluate, make_init, make_train_step


def hardware() -> dict:
  device = jax.devices()[0]
  return {"platform": device.platform, "device_kind": device.device_kind,
          "device_count": jax.device_count(), "process_count": jax.process_count(),
          "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
          "jax": jax.__version__}


def _prepare_workdir(workdir: Path, config) -> None:
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  except OSError as e:
    raise UserError(f"cannot write to workdir {workdir} ({e.strerror}): choose a writable --workdir")


def train_and_evaluate(config, workdir, *, stop_after_steps: int | None = None) -> dict | None:
  """Train and evaluate as `config` says, in `workdir`. Returns the results (also written to
  results.json), or None if `stop_after_steps` stopped this process first (a checkpoint is saved, and
  running again resumes)."""
  t_start = time.time()
  workdir = Path(workdir)
  _prepare_workdir(workdir, config)
  data = load_dataset(config)
  mesh = parallel.make_mesh()
  parallel.check_batch_size(config.batch_size)
  parallel.check_batch_size(config.eval_batch_size, "eval_batch_size")
  steps_per_epoch = len(data.train) // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"batch_size={config.batch_size} exceeds the {len(data.train)} training examples")
  total_steps = config.num_train_steps or math.ceil(config.num_epochs * steps_per_epoch)

  model = build_model(config, data.num_classes)
  schedule = make_schedule(config, total_steps, steps_per_epoch)
  tx = make_optimizer(config, schedule)
  init_key, order_key, step_key = jax.random.split(jax.random.key(config.seed), 3)
  state = make_init(model, tx, data.image_shape, mesh)(init_key)
  checkpoints = Checkpoints(workdir / "checkpoints", config.checkpoints_to_keep)
  start = checkpoints.latest_step() or 0
  if start:
    state = checkpoints.restore(start, state)

  put = lambda a: jax.device_put(a, parallel.replicated(mesh))
  train_x, train_y, test_x, test_y = map(put, (data.train.images, data.train.labels,
                                               data.test.images, data.test.labels))
  train_step = make_train_step(model, tx, config, data.mean, data.std, steps_per_epoch, mesh)
  epoch_order = make_epoch_order(len(data.train), mesh)
  evaluate = make_evaluate(model, data.mean, data.std, config.eval_batch_size, mesh)
  eval_every = config.eval_every_steps or steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps or eval_every
  end = total_steps if stop_after_steps is None else min(total_steps, start + stop_after_steps)

  writer = MetricWriter(workdir)
  bar = tqdm(total=total_steps, initial=start, unit="step", disable=None, dynamic_ncols=True)
  pending, order, order_epoch = [], None, None
  t_log, step_log = time.time(), start
  for step in range(start, end):
    epoch = step // steps_per_epoch
    if epoch != order_epoch:
      order, order_epoch = epoch_order(order_key, epoch), epoch
    state, metrics = train_step(state, train_x, train_y, order, step_key)
    pending.append(metrics)
    done = step + 1
    if done % config.log_every_steps == 0 or done == end:
      summary = {f"train/{k}": float(np.mean(v)) for k, v in jax.device_get(
          {k: [m[k] for m in pending] for k in pending[0]}).items()}
      now = time.time()
      summary["train/images_per_s"] = (done - step_log) * config.batch_size / (now - t_log)
      summary["train/learning_rate"] = float(schedule(step))
      writer.write(done, summary)
      bar.update(done - step_log)
      bar.set_postfix(loss=f"{summary['train/loss']:.3f}", img_s=f"{summary['train/images_per_s']:.0f}")
      pending, t_log, step_log = [], now, done
    if done % eval_every == 0 or done == total_steps:
      test = jax.device_get(evaluate(state.params, test_x, test_y, len(data.test)))
      writer.write(done, {f"test/{k}": v for k, v in test.items()})
      bar.write(f"step {done}/{total_steps} (epoch {done / steps_per_epoch:.2f}): "
                f"test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")
      t_log = time.time()  # evaluation time is not training throughput
    if done % checkpoint_every == 0 or done in (end, total_steps):
      checkpoints.save(done, state)
  bar.close()
  checkpoints.close()
  writer.close()
  if end < total_steps:
    return None

  n_train = min(config.eval_train_examples, len(data.train))
  final = {f"train_{k}": float(v) for k, v in
           jax.device_get(evaluate(state.params, train_x, train_y, n_train)).items()}
  final.update({f"test_{k}": float(v) for k, v in
                jax.device_get(evaluate(state.params, test_x, test_y, len(data.test))).items()})
  results = {"final": final, "steps": total_steps, "epochs": total_steps / steps_per_epoch,
             "train_examples_scored": n_train, "seed": config.seed,
             "wall_time_s": time.time() - t_start, "resumed_from_step": start,
             "hardware": hardware(), "config": json.loads(config.to_json_best_effort())}
  (workdir / "results.json").write_text(json.dumps(results, indent=2))
  return results
