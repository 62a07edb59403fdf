"""`train_and_evaluate(config, workdir)`: the one training loop that every config, test and experiment
calls. It trains what gap_jax/training_setup.py builds from the config, resumes from the workdir's newest
good checkpoint, logs metrics (metrics.jsonl, TensorBoard), stops cleanly on SIGTERM or a non-finite loss,
writes results.json when training is complete and, with `profile_steps`, a jax.profiler trace of those
steps in <workdir>/profile."""

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from gap_jax import parallel
from gap_jax.checkpoint import Checkpoints
from gap_jax.cpu.identity import cpu_identity
from gap_jax.errors import UserError
from gap_jax.metric_writer import MetricWriter
from gap_jax.preemption import StopRequest, stop_request
from gap_jax.steps import run_keys
from gap_jax.training_setup import build_training_setup
from gap_jax.validate import validate_config
from gap_jax.workdir import prepare_workdir, record_config, staging_folder, unstage, workdir_path


# The packages whose versions decide a run's numbers; results.json records them beside the code's commit.
RECORDED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "tensorflow-datasets")


def _code_commit() -> str | None:
  """The git commit of this checkout (with "+dirty" for uncommitted changes), None outside a git clone."""
  here = Path(__file__).parent
  try:
    run = lambda *args: subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                                       check=True, timeout=10).stdout.strip()
    return run("rev-parse", "HEAD") + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
  except (OSError, subprocess.SubprocessError):
    return None


def _version(package: str) -> str | None:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def _cpu_model() -> str | None:
  """The CPU (gap_jax/cpu/identity.py) with its widest vector extensions."""
  identity = cpu_identity()
  if identity is None:
    return None
  model, flags = identity
  isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
  return f"{model}; {' '.join(isa) or 'no avx2'}"


def hardware(mesh=None) -> dict:
  """The machine, the versions and the commit; the devices are those of `mesh` (a run's: what it trained on),
  or every device."""
  devices = list(mesh.devices.flat) if mesh is not None else jax.devices()
  return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
          "device_count": len(devices), "device_ids": [d.id for d in devices],
          "process_count": jax.process_count(),
          "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
          "cpu_model": _cpu_model(),
          "jax": jax.__version__, "versions": {p: _version(p) for p in RECORDED_PACKAGES},
          "commit": _code_commit()}


def _progress_line(done: int, start: int, total: int, elapsed_s: float, summary: dict) -> str:
  """What the tqdm bar shows, as one line for a log file: tqdm draws nothing when stdout is not a terminal."""
  eta_s = (total - done) * elapsed_s / max(done - start, 1)
  return (f"step {done}/{total} ({100 * done / total:.0f}%): loss {summary['train/loss']:.4f}, "
          f"{summary['train/images_per_s']:.0f} images/s, ETA {time.strftime('%H:%M:%S', time.gmtime(eta_s))}")


def _summarize(pending: list[dict], first_step: int) -> dict[str, float]:
  """Mean of the per-step metrics. A non-finite loss, gradient or parameter stops the run, naming the
  step, before its state can be checkpointed."""
  fetched = jax.device_get(pending)
  for i, m in enumerate(fetched):
    bad = [k for k in ("loss", "grad_norm", "param_norm") if not np.isfinite(m[k])]
    if bad:
      raise UserError(f"{bad[0]} became {m[bad[0]]} at step {first_step + i + 1}: the run is stopped and "
                      "its last good checkpoint kept; lower the learning_rate or check the data")
  return {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def train_and_evaluate(config, workdir, *, stop_after_steps: int | None = None,
                       on_config_change: str = "refuse", stop: StopRequest | None = None,
                       label: str = "") -> dict | None:
  """Train and evaluate as `config` says, in `workdir`, on every device (or this thread's
  parallel.use_devices). Returns the results (also written to results.json), or None when this process
  stopped early (`stop_after_steps` steps done, SIGTERM, or `stop` requested) after saving a checkpoint:
  running again resumes. `on_config_change`: see gap_jax/workdir.py. `stop`: a StopRequest entered by the
  main thread, for a run in another thread (signals reach only the main thread); `label` names the run on
  its progress lines, where several runs train at once."""
  t_start = time.time()
  workdir = workdir_path(workdir)  # local or gs:// (workdir.py)
  validate_config(config)
  mesh = parallel.make_mesh()  # the mesh build_training_setup makes below: every device, or this thread's
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  primary = parallel.is_primary()
  # After validation (a bad config writes nothing), before the data: a refused workdir does not wait for
  # the dataset to load and preprocess (GCN + ZCA takes minutes).
  if primary:
    prepare_workdir(workdir, config, on_config_change)
  run = build_training_setup(config)
  data, steps_per_epoch, total_steps = run.data, run.steps_per_epoch, run.total_steps

  _, order_key, step_key = run_keys(config.seed)
  checkpoints = Checkpoints(workdir / "checkpoints", config.checkpoints_to_keep)
  start, state = checkpoints.restore_latest(run.initial_state())
  if primary:
    record_config(workdir, config)  # after the restore: a checkpoint that does not fit keeps the old record
  train_x, train_y, test_x, test_y = run.on_device()
  scored_x, scored_y = run.scored_on_device()
  batches = run.batches(order_key, start, train_x, train_y)
  eval_every = config.eval_every_steps or steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps or eval_every
  end = total_steps if stop_after_steps is None else min(total_steps, start + stop_after_steps)

  writer = MetricWriter(workdir) if primary else MetricWriter.discarding()
  bar = tqdm(total=total_steps, initial=start, unit="step", disable=None if primary else True,
             dynamic_ncols=True, desc=label or None)

  def say(line: str) -> None:  # under tqdm's lock, whole beside other threads' runs; flushed for log files
    bar.write(f"{label}: {line}" if label else line)
    sys.stdout.flush()

  pending, done, final_test = [], start, None  # final_test: the evaluated split's scores at the last step
  t_log, step_log = time.time(), start
  t_run = t_progress = t_log
  trace_first, trace_count = config.profile_steps or (0, 0)  # steps counted from 1, as in the logs
  traced = range(trace_first, trace_first + trace_count) if primary else range(0)  # the primary host's
  tracing, traced_into = False, None
  try:
    with contextlib.nullcontext(stop) if stop else stop_request() as stop:
      for step in range(start, end):
        if step + 1 in traced and not tracing:
          traced_into = staging_folder(workdir)  # jax.profiler writes local files only: gs:// gets them after
          jax.profiler.start_trace(traced_into / "profile")
          tracing = True
        state, metrics = run.train_step(state, *next(batches), step_key)
        pending.append(metrics)
        done = step + 1
        evaluate_now = done % eval_every == 0 or done == total_steps
        # Read once: a SIGTERM that lands later in this iteration (during the evaluation or the save) is
        # served at the next step, never announced for a step whose checkpoint was not written.
        stopping = stop.reached(done)  # every process agrees on the step (preemption.py)
        save_now = done % checkpoint_every == 0 or done in (end, total_steps) or stopping
        if done % config.log_every_steps == 0 or evaluate_now or save_now:
          summary = _summarize(pending, step_log)  # before any save: never checkpoint a NaN
          now = time.time()
          summary["train/images_per_s"] = (done - step_log) * config.batch_size / (now - t_log)
          summary["train/learning_rate"] = float(run.schedule(step))
          writer.write(done, summary)
          bar.update(done - step_log)
          bar.set_postfix(loss=f"{summary['train/loss']:.3f}", img_s=f"{summary['train/images_per_s']:.0f}")
          if primary and bar.disable and now - t_progress >= config.progress_every_s:
            t_progress = now
            say(_progress_line(done, start, total_steps, now - t_run, summary))
          pending, t_log, step_log = [], now, done
        if evaluate_now:
          test = jax.device_get(run.evaluate(state.params, test_x, test_y, len(data.test)))
          final_test = test if done == total_steps else None
          writer.write(done, {f"test/{k}": v for k, v in test.items()})
          say(f"step {done}/{total_steps} (epoch {done / steps_per_epoch:.2f}): "
              f"test accuracy {test['accuracy']:.4f}, loss {test['loss']:.4f}")
          t_log = time.time()  # evaluation time is not training throughput
        if save_now:
          checkpoints.save(done, state)
        if tracing and done == traced[-1]:
          jax.block_until_ready(state)  # the trace ends once the last traced step has computed
          jax.profiler.stop_trace()
          tracing = False
        if stopping:
          say(f"{stop.reason}: checkpoint saved at step {done}; run the same command to resume")
          break
  finally:
    if tracing:
      jax.profiler.stop_trace()
    if traced_into is not None:
      unstage(traced_into, workdir)
    bar.close()
    checkpoints.close()  # waits for the last asynchronous save to be complete on disk
    writer.close()
  if done < total_steps:
    return None

  n_train = len(run.scored)
  final = {f"train_{k}": float(v) for k, v in
           jax.device_get(run.evaluate(state.params, scored_x, scored_y, n_train)).items()}
  if final_test is None:  # evaluated at the last step already, unless the run resumed there
    final_test = jax.device_get(run.evaluate(state.params, test_x, test_y, len(data.test)))
  final.update({f"test_{k}": float(v) for k, v in final_test.items()})
  results = {"final": final, "steps": total_steps, "epochs": total_steps / steps_per_epoch,
             "train_examples_scored": n_train, "seed": config.seed, "evaluated_split": data.eval_split,
             "wall_time_s": time.time() - t_start, "resumed_from_step": start,
             "hardware": hardware(run.mesh), "config": json.loads(config.to_json_best_effort())}
  if primary:
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
  return results
