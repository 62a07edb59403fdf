"""`train_and_evaluate(config, workdir)`: the one training loop that every config, test and experiment
calls; `train_together` is that loop over several seeds of one config at once (one vmapped step). It trains
what gap_jax/training_setup.py builds from the config, resumes from the workdir's newest
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
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gap_jax import parallel
from gap_jax.checkpoint import Checkpoints
from gap_jax.cpu.identity import cpu_identity
from gap_jax.errors import UserError
from gap_jax.metric_writer import MetricWriter
from gap_jax.preemption import StopRequest, stop_request
from gap_jax.steps import Bound, run_keys, stacked
from gap_jax.training_setup import build_training_setup, without_seed
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


def hms(seconds: float) -> str:
  """A duration as h:mm:ss, hours not wrapping at a day (a CPU run of NiN's recipe takes days)."""
  minutes, s = divmod(round(seconds), 60)
  return f"{minutes // 60}:{minutes % 60:02d}:{s:02d}"


def _progress_line(done: int, start: int, total: int, elapsed_s: float, summary: dict) -> str:
  """What the tqdm bar shows, as one line for a log file: tqdm draws nothing when stdout is not a terminal."""
  eta_s = (total - done) * elapsed_s / max(done - start, 1)
  return (f"step {done}/{total} ({100 * done / total:.0f}%): loss {summary['train/loss']:.4f}, "
          f"{summary['train/images_per_s']:.0f} images/s, ETA {hms(eta_s)}")


def _summarize(fetched: list[dict], first_step: int, run: str = "") -> dict[str, float]:
  """Mean of the per-step metrics (fetched to the host). A non-finite loss, gradient or parameter stops the run,
  naming the step (and `run`, where several train together), before its state can be checkpointed."""
  for i, m in enumerate(fetched):
    bad = [k for k in ("loss", "grad_norm", "param_norm") if not np.isfinite(m[k])]
    if bad:
      raise UserError(f"{bad[0]} became {m[bad[0]]} at step {first_step + i + 1}{run}: the run is stopped and "
                      "its last good checkpoint kept; lower the learning_rate or check the data")
  return {f"train/{k}": float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


class _Stacked:
  """The runs' data arguments of each step stacked on a run axis, each stacked only when one run's argument is a
  new object (the training set once, the order once an epoch, a streamed batch every step)."""

  def __init__(self):
    self._kept = {}  # argument position -> (the runs' arguments, stacked); held, so `is` cannot meet a reused id

  def __call__(self, per_run: list[tuple]) -> tuple:
    out = []
    for i, xs in enumerate(zip(*per_run)):
      kept = self._kept.get(i)
      if kept is None or any(a is not b for a, b in zip(xs, kept[0])):
        kept = self._kept[i] = (xs, jnp.stack(xs))
      out.append(kept[1])
    return tuple(out)


def _check_together(configs, mesh) -> None:
  """Runs train together only as one program on one device: configs that differ in their seed alone."""
  if len({json.dumps(without_seed(c), sort_keys=True, default=str) for c in configs}) > 1:
    raise ValueError("runs train together only when their configs differ in the seed alone")
  if mesh.devices.size > 1:
    raise UserError(f"seeds train together on one device, and this run's mesh has {mesh.devices.size}: leave "
                    "out --seeds-together, or let the sweep put one group of seeds on each device (no "
                    "--data-parallel-runs, one process)")


def train_and_evaluate(config, workdir, **kwargs) -> dict | None:
  """Train and evaluate as `config` says, in `workdir`, on every device (or this thread's
  parallel.use_devices). Returns the results (also written to results.json), or None when this process
  stopped early (`stop_after_steps` steps done, SIGTERM, or `stop` requested) after saving a checkpoint:
  running again resumes. `on_config_change`: see gap_jax/workdir.py. `stop`: a StopRequest entered by the
  main thread, for a run in another thread (signals reach only the main thread); `label` names the run on
  its progress lines, where several runs train at once."""
  return train_together([config], [workdir], **kwargs)[0]


def train_together(configs, workdirs, *, stop_after_steps: int | None = None, on_config_change: str = "refuse",
                   stop: StopRequest | None = None, label: str = "") -> list[dict | None]:
  """train_and_evaluate of runs whose configs differ in the seed alone, as one: their states stacked and one
  jax.vmap of the training step advancing them all (each its own initial weights, data draw, batch order,
  augmentation and dropout), on a one-device mesh. Each run keeps its own workdir, checkpoints, metrics and
  results.json, written as if it had trained alone, so it resumes, alone or together, and is measured like any
  other. Runs whose checkpoints are at different steps train one after another. One run: the plain step."""
  t_start = time.time()
  workdirs = [workdir_path(w) for w in workdirs]  # local or gs:// (workdir.py)
  for config in configs:
    validate_config(config)
  config, together = configs[0], len(configs)
  mesh = parallel.make_mesh()  # the mesh build_training_setup makes below: every device, or this thread's
  parallel.check_batch_size(config.batch_size, mesh)
  parallel.check_batch_size(config.eval_batch_size, mesh, "eval_batch_size")
  if together > 1:
    _check_together(configs, mesh)
  primary = parallel.is_primary()
  # After validation (a bad config writes nothing), before the data: a refused workdir does not wait for
  # the dataset to load and preprocess (GCN + ZCA takes minutes).
  if primary:
    for c, w in zip(configs, workdirs):
      prepare_workdir(w, c, on_config_change)
  runs = [build_training_setup(c) for c in configs]
  run = runs[0]
  steps_per_epoch, total_steps = run.steps_per_epoch, run.total_steps

  keys = [run_keys(c.seed) for c in configs]  # (init, order, step) of each run
  checkpoints = [Checkpoints(w / "checkpoints", c.checkpoints_to_keep) for c, w in zip(configs, workdirs)]
  restored = [ck.restore_latest(r.initial_state()) for ck, r in zip(checkpoints, runs)]
  if len({step for step, _ in restored}) > 1:  # e.g. stopped while they trained one after another
    for ck in checkpoints:
      ck.close()
    kwargs = dict(stop_after_steps=stop_after_steps, on_config_change=on_config_change, label=label)
    with contextlib.nullcontext(stop) if stop else stop_request() as stop:
      return [None if stop.requested else train_together([c], [w], stop=stop, **kwargs)[0]
              for c, w in zip(configs, workdirs)]
  start = restored[0][0]
  # Each run's training time from before this invocation, kept in its checkpoints: a resumed run's results count
  # every invocation's time, not only the last one's.
  clocks = [ck.clock(start) if start else {"train_time_s": 0.0, "train_time_from_step": 0} for ck in checkpoints]
  clock = lambda i: {**clocks[i], "train_time_s": clocks[i]["train_time_s"] + (time.time() - t_start) / together}
  if primary:
    for c, w in zip(configs, workdirs):
      record_config(w, c)  # after the restore: a checkpoint that does not fit keeps the old record
  on_device = [r.on_device() for r in runs]  # (train_x, train_y, test_x, test_y) of each
  scored = [r.scored_on_device() for r in runs]
  batches = [r.batches(k[1], start, *d[:2]) for r, k, d in zip(runs, keys, on_device)]
  if together == 1:
    state, step_key, step_fn = restored[0][1], keys[0][2], run.train_step
    next_args = lambda: next(batches[0])
    seed_state = lambda state, i: state
  else:
    state, step_key = stacked([s for _, s in restored]), stacked([k[2] for k in keys])
    step_fn = Bound(run.train_steps_together, stacked([r.train_step.bound for r in runs]))
    stack_args = _Stacked()
    next_args = lambda: stack_args([next(b) for b in batches])
    seed_state = lambda state, i: jax.tree.map(lambda x: x[i], state)
  names = [f" (run {w})" if together > 1 else "" for w in workdirs]
  eval_every = config.eval_every_steps or steps_per_epoch
  checkpoint_every = config.checkpoint_every_steps or eval_every
  end = total_steps if stop_after_steps is None else min(total_steps, start + stop_after_steps)

  writers = [MetricWriter(w) if primary else MetricWriter.discarding() for w in workdirs]
  bar = tqdm(total=total_steps, initial=start, unit="step", disable=None if primary else True,
             dynamic_ncols=True, desc=label or None)

  def say(line: str) -> None:  # under tqdm's lock, whole beside other threads' runs; flushed for log files
    bar.write(f"{label}: {line}" if label else line)
    sys.stdout.flush()

  def evaluate(i, params, images, labels, n):
    return jax.device_get(runs[i].evaluate(seed_state(params, i), images, labels, n))

  pending, done, final_tests = [], start, [None] * together  # final_tests: each run's scores at the last step
  t_log, step_log = time.time(), start
  t_run = t_progress = t_log
  trace_first, trace_count = config.profile_steps or (0, 0)  # steps counted from 1, as in the logs
  traced = range(trace_first, trace_first + trace_count) if primary else range(0)  # the primary host's
  tracing, traced_into = False, None
  try:
    with contextlib.nullcontext(stop) if stop else stop_request() as stop:
      for step in range(start, end):
        if step + 1 in traced and not tracing:
          traced_into = staging_folder(workdirs[0])  # jax.profiler writes local files only: gs:// gets them after
          jax.profiler.start_trace(traced_into / "profile")
          tracing = True
        state, metrics = step_fn(state, *next_args(), step_key)
        pending.append(metrics)
        done = step + 1
        evaluate_now = done % eval_every == 0 or done == total_steps
        # Read once: a SIGTERM that lands later in this iteration (during the evaluation or the save) is
        # served at the next step, never announced for a step whose checkpoint was not written.
        stopping = stop.reached(done)  # every process agrees on the step (preemption.py)
        save_now = done % checkpoint_every == 0 or done in (end, total_steps) or stopping
        if done % config.log_every_steps == 0 or evaluate_now or save_now:
          fetched = jax.device_get(pending)  # before any save: never checkpoint a NaN
          summaries = [_summarize([seed_state(m, i) for m in fetched], step_log, names[i]) for i in range(together)]
          now = time.time()
          for summary, writer in zip(summaries, writers):
            summary["train/images_per_s"] = (done - step_log) * config.batch_size / (now - t_log)
            summary["train/learning_rate"] = float(run.schedule(step))
            writer.write(done, summary)
          shown = {k: float(np.mean([s[k] for s in summaries])) for k in summaries[0]}  # the runs' mean
          shown["train/images_per_s"] *= together  # what the device computes
          bar.update(done - step_log)
          bar.set_postfix(loss=f"{shown['train/loss']:.3f}", img_s=f"{shown['train/images_per_s']:.0f}")
          if primary and bar.disable and now - t_progress >= config.progress_every_s:
            t_progress = now
            say(_progress_line(done, start, total_steps, now - t_run, shown))
          pending, t_log, step_log = [], now, done
        if evaluate_now:
          tests = [evaluate(i, state.params, d[2], d[3], len(r.data.test))
                   for i, (r, d) in enumerate(zip(runs, on_device))]
          final_tests = tests if done == total_steps else final_tests
          for test, writer in zip(tests, writers):
            writer.write(done, {f"test/{k}": v for k, v in test.items()})
          scores = lambda name: ", ".join(f"{t[name]:.4f}" for t in tests)
          say(f"step {done}/{total_steps} (epoch {done / steps_per_epoch:.2f}): test accuracy {scores('accuracy')}, "
              f"loss {scores('loss')}")
          t_log = time.time()  # evaluation time is not training throughput
        if save_now:
          for i, ck in enumerate(checkpoints):
            ck.save(done, seed_state(state, i), clock(i))
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
      unstage(traced_into, workdirs[0])
    bar.close()
    for ck in checkpoints:
      ck.close()  # waits for the last asynchronous save to be complete on disk
    for writer in writers:
      writer.close()
  if done < total_steps:
    return [None] * together

  wall_time_s, machine = time.time() - t_start, hardware(run.mesh)  # the runs share one mesh
  all_results = []
  for i, (c, w, r, (x, y)) in enumerate(zip(configs, workdirs, runs, scored)):
    n_train = len(r.scored)
    final = {f"train_{k}": float(v) for k, v in evaluate(i, state.params, x, y, n_train).items()}
    test = final_tests[i]
    if test is None:  # evaluated at the last step already, unless the run resumed there
      test = evaluate(i, state.params, on_device[i][2], on_device[i][3], len(r.data.test))
    final.update({f"test_{k}": float(v) for k, v in test.items()})
    # wall_time_s: the run's share of the time the runs trained together took in this invocation;
    # train_time_s: the same over every invocation since step train_time_from_step (0 unless it resumed from a
    # checkpoint that kept no time).
    results = {"final": final, "steps": total_steps, "epochs": total_steps / steps_per_epoch,
               "train_examples_scored": n_train, "seed": c.seed, "evaluated_split": r.data.eval_split,
               "wall_time_s": wall_time_s / together, "trained_together": together,
               "resumed_from_step": start, "train_time_s": clocks[i]["train_time_s"] + wall_time_s / together,
               "train_time_from_step": clocks[i]["train_time_from_step"], "hardware": machine,
               "config": json.loads(c.to_json_best_effort())}
    if primary:
      (w / "results.json").write_text(json.dumps(results, indent=2))
    all_results.append(results)
  return all_results
