"""An experiment's runs spread over a process's devices (experiments/sweep_devices.py): one run per device, several
at once, each the same computation as in a one-device process; results in sweep order whatever order the runs
finish in; SIGTERM and a failing run stop every run cleanly; shards spread too; --data-parallel-runs opts out.

The pool's own tests use fake runs (no training); the rest run the experiment command in a subprocess with 2 fake
CPU devices (tests/sweep_devices_check.py) and compare with the same tiny sweep trained here, in this one-device
process, one run after another."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import pytest

from experiments import framework
from experiments.sweep_devices import map_on_devices
from gap_jax.errors import UserError
from sweep_devices_check import STEPS, tiny_experiment

ROOT = Path(__file__).parents[1]
NAME, SEEDS = "rf_coverage", 2
TWO = [jax.devices()[0]] * 2  # two threads for the pool's own tests; which device they name does not matter


def wait_until(condition, timeout=30.0):
  end = time.time() + timeout
  while not condition():
    assert time.time() < end, "timed out"
    time.sleep(0.005)


def test_runs_overlap_and_results_keep_the_sweep_order():
  both_started = threading.Barrier(2, timeout=30)  # broken (an error) unless the first two run at once
  finished = []

  def fn(item, device, stop):
    if item < 2:
      both_started.wait()
    time.sleep(0.05 * (4 - item))  # later items finish sooner
    finished.append(item)
    return item * 10
  assert map_on_devices(fn, list(range(4)), TWO) == [0, 10, 20, 30]
  assert finished != sorted(finished)


def test_a_failing_run_stops_the_others_and_raises_the_first_error_in_sweep_order():
  all_started = threading.Barrier(3, timeout=30)
  started, reasons = [], []

  def fn(item, device, stop):
    started.append(item)
    all_started.wait()
    if item == 1:
      raise UserError("run 1")  # the first to fail
    wait_until(lambda: stop.requested)  # as a run in training saves and stops at its next step
    reasons.append(stop.reason)
    if item == 0:
      raise UserError("run 0")  # fails later, but comes first in the sweep, as one after another it would
    return None
  with pytest.raises(UserError, match="run 0"):
    map_on_devices(fn, list(range(6)), TWO + TWO[:1])
  assert sorted(started) == [0, 1, 2]  # no run started after the failure
  assert all("another run failed (UserError)" in r for r in reasons) and len(reasons) == 2


@pytest.mark.parametrize("to", ["process", "run_thread"])
def test_sigterm_reaches_the_runs_in_every_thread(to):
  """The handler lives in the main thread (signal.signal works only there); the runs in the pool's threads see
  its request, and no other run starts. The kernel may hand a process's SIGTERM to any of its threads: one that
  lands on a run's thread must reach the handler too while the runs wait for it (it once waited for them)."""
  before = signal.getsignal(signal.SIGTERM)
  both_started = threading.Barrier(2, timeout=30)
  started, reasons = [], []

  def fn(item, device, stop):
    started.append(item)
    both_started.wait()
    if item == 0:
      assert getattr(signal.getsignal(signal.SIGTERM), "__self__", None) is stop  # else SIGTERM ends pytest
      if to == "process":
        os.kill(os.getpid(), signal.SIGTERM)
      else:
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    wait_until(lambda: stop.requested)
    reasons.append(stop.reason)
    return None
  assert map_on_devices(fn, list(range(4)), TWO) == [None] * 4
  assert sorted(started) == [0, 1] and reasons == ["SIGTERM", "SIGTERM"]
  assert signal.getsignal(signal.SIGTERM) == before


def test_data_parallel_runs_is_refused_for_the_flagship(monkeypatch, capsys):
  from experiments.__main__ import main
  monkeypatch.setattr(sys, "argv", ["experiments", "why_gap_works", "--data-parallel-runs"])
  with pytest.raises(SystemExit) as exit_:
    main()
  assert exit_.value.code == 2 and "--data-parallel-runs is for one experiment's sweep" in capsys.readouterr().err


def command(out, *extra):
  return [sys.executable, str(ROOT / "tests" / "sweep_devices_check.py"), NAME, "--quick", "--seeds", str(SEEDS),
          "--out", str(out), *extra]


def environment(devices: int) -> dict:
  path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
  return dict(os.environ, JAX_NUM_CPU_DEVICES=str(devices), PYTHONPATH=path)


def run_command(out, *extra, devices=2):
  done = subprocess.run(command(out, *extra), env=environment(devices), capture_output=True, text=True, cwd=ROOT,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def runs_of(out) -> dict[str, Path]:
  return {f"{w.parent.name}/{w.name}": w for w in sorted(Path(out).glob("runs/*/seed*")) if w.is_dir()}


def numbers(out) -> dict:
  """Each trained run's measured numbers and its final losses and accuracies: all but its time."""
  found = {}
  for name, workdir in runs_of(out).items():
    measured = json.loads((workdir / "measured.json").read_text())
    measured.pop("train_time_s")
    found[name] = measured, json.loads((workdir / "results.json").read_text())["final"]
  return found


def devices_used(out) -> dict[str, list[int]]:
  return {name: json.loads((w / "results.json").read_text())["hardware"]["device_ids"]
          for name, w in runs_of(out).items()}


def report_runs(out) -> dict:
  """results.json's runs as the report lists them (point by point, seed by seed), times left out."""
  runs = json.loads((Path(out) / "results.json").read_text())["runs"]
  return {key: [{k: v for k, v in r.items() if k != "train_time_s"} for r in seeds] for key, seeds in runs.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The tiny sweep one run after another in this one-device process."""
  assert jax.device_count() == 1
  out = tmp_path_factory.mktemp("one_device")
  framework.run(tiny_experiment(NAME), out, quick=True, seeds=SEEDS)
  assert len(numbers(out)) == 4
  return out


@pytest.mark.slow
def test_runs_spread_over_two_devices_are_the_runs_of_one_device(tmp_path, reference):
  """Bit for bit: a run on a one-device mesh compiles and computes as in a 1-device process, whichever device."""
  stdout = run_command(tmp_path)
  used = devices_used(tmp_path)
  assert len(used) == 4 and all(len(ids) == 1 for ids in used.values())  # each run on one device
  assert {ids[0] for ids in used.values()} == {0, 1}  # both devices trained
  assert "on cpu:0" in stdout and "on cpu:1" in stdout
  assert numbers(tmp_path) == numbers(reference)
  assert report_runs(tmp_path) == report_runs(reference)  # in sweep order


def metric_lines(workdir) -> int:
  try:
    return len((workdir / "metrics.jsonl").read_text().splitlines())
  except FileNotFoundError:
    return 0


@pytest.mark.slow
def test_sigterm_saves_every_running_run_exits_0_and_the_same_command_resumes(tmp_path, reference):
  points = tiny_experiment(NAME).sweep(True)
  first = [tmp_path / "runs" / points[0].key / f"seed{s}" for s in range(2)]  # one on each device
  proc = subprocess.Popen(command(tmp_path), env=environment(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT)
  end = time.time() + 300
  while not all(metric_lines(w) >= 2 for w in first) and proc.poll() is None and time.time() < end:
    time.sleep(0.005)
  proc.send_signal(signal.SIGTERM)
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-3000:]
  assert "stopped: " in stderr and "run the same command to resume" in stderr
  for w in first:
    saved = [int(p.name) for p in (w / "checkpoints").iterdir() if (p / "commit_success.txt").exists()]
    assert len(saved) == 1 and 2 <= saved[0] < STEPS, saved
    assert f"{w.parent.name}/{w.name}: SIGTERM: checkpoint saved at step {saved[0]}" in stdout
    assert not (w / "results.json").exists()
  assert not (tmp_path / "runs" / points[1].key).exists()  # no run started after the signal
  run_command(tmp_path)
  assert numbers(tmp_path) == numbers(reference) and report_runs(tmp_path) == report_runs(reference)


@pytest.mark.slow
def test_shards_spread_over_the_devices_and_the_last_writes_the_report(tmp_path, reference):
  run_command(tmp_path, "--shard", "0/2")
  used = devices_used(tmp_path)
  keys = [p.key for p in tiny_experiment(NAME).sweep(True)]
  assert sorted(used) == sorted([f"{keys[0]}/seed0", f"{keys[1]}/seed0"])  # runs 0 and 2 of 4
  assert sorted(ids[0] for ids in used.values()) == [0, 1] and not (tmp_path / "report.md").exists()
  run_command(tmp_path, "--shard", "1/2")
  assert (tmp_path / "report.md").exists()
  assert numbers(tmp_path) == numbers(reference) and report_runs(tmp_path) == report_runs(reference)


@pytest.mark.slow
def test_data_parallel_runs_train_each_run_over_every_device(tmp_path):
  stdout = run_command(tmp_path, "--data-parallel-runs")
  used = devices_used(tmp_path)
  assert len(used) == 4 and all(ids == [0, 1] for ids in used.values())
  assert " on cpu:" not in stdout and (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_seeds_together_put_a_group_of_seeds_on_each_device(tmp_path, reference):
  stdout = run_command(tmp_path, "--seeds-together")
  used = devices_used(tmp_path)
  keys = [p.key for p in tiny_experiment(NAME).sweep(True)]
  assert {name.split("/")[0]: ids for name, ids in used.items()} in (  # both seeds of a point on one device
      {keys[0]: [0], keys[1]: [1]}, {keys[0]: [1], keys[1]: [0]})
  assert f"{keys[0]} seeds 0, 1 on cpu:" in stdout
  together, alone = numbers(tmp_path), numbers(reference)
  assert together.keys() == alone.keys()
  for name in alone:  # the same runs, but for the float rounding of the seeds' batched convolutions
    for got, expected in zip(together[name], alone[name]):
      assert got == pytest.approx(expected, rel=1e-3, abs=1e-3), name


@pytest.mark.slow  # a Python process
def test_seeds_together_over_every_device_is_refused(tmp_path):
  done = subprocess.run(command(tmp_path, "--seeds-together", "--data-parallel-runs"), env=environment(2),
                        capture_output=True, text=True, cwd=ROOT, timeout=300)
  assert done.returncode == 2 and "--seeds-together trains each point's seeds on one device" in done.stderr
  assert not (tmp_path / "runs").exists()  # refused before any run
