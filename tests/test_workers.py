"""--workers N: N processes of one CPU host, each pinned to its own cores, train a sweep's shards; a SIGTERM
or Ctrl-C reaches every one, a failing one stops the others, and the command then writes the report from their runs."""

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time

import pytest

import experiments
from experiments import framework, why_gap_works, workers
from experiments.__main__ import add_sweep_arguments, own_share
from gap_jax.errors import UserError

# A stand-in worker: records its cores and options, then exits as its argv[1] says: "ok" at once, "fail" with
# status 3, "wait" when SIGTERM arrives (status 0, as a stopped experiment command exits).
WORKER = r"""
import json, os, signal, sys, time
out, mode = sys.argv[1], sys.argv[2]
shard = sys.argv[sys.argv.index("--shard") + 1].replace("/", "of")
os.environ.get("GAP_JAX_WORKER_CORES") and os.sched_setaffinity(
    0, [int(c) for c in os.environ["GAP_JAX_WORKER_CORES"].split(",")])
record = lambda **kw: open(os.path.join(out, shard + ".json"), "w").write(json.dumps(
    {"cores": sorted(os.sched_getaffinity(0)), "argv": sys.argv[3:], **kw}))
if mode == "fail" and shard.startswith("1of"):  # the later worker: its exit must be seen while the first runs
    sys.exit(3)
if mode == "ok":
    record()
    sys.exit(0)
signal.signal(signal.SIGTERM, lambda *a: (record(sigterm=True), sys.exit(0)))
open(os.path.join(out, shard + ".started"), "w").close()
time.sleep(60)
record(sigterm=False)
"""


def two_cores():
  if len(os.sched_getaffinity(0)) < 2:
    pytest.skip("needs 2 CPU cores")


def command(tmp_path, mode):
  return [sys.executable, "-c", WORKER, str(tmp_path), mode]


def recorded(tmp_path, n):
  return [json.loads((tmp_path / f"{i}of{n}.json").read_text()) for i in range(n)]


@pytest.mark.parametrize("cores,n", [(range(6), 4), (range(2), 2), ([3, 7, 9], 1), (range(5), 5)])
def test_core_shares_cover_every_core_once(cores, n):
  shares = workers.core_shares(n, cores)
  assert len(shares) == n and all(shares)
  assert sorted(c for s in shares for c in s) == sorted(cores)


@pytest.mark.parametrize("text,cores", [("200000 100000\n", 2), ("150000 100000", 1), ("max 100000", 1 << 30),
                                        ("", 1 << 30)])
def test_a_containers_cpu_quota_counts_its_cores(tmp_path, text, cores):
  (tmp_path / "cpu.max").write_text(text)
  assert workers.cpu_quota(str(tmp_path / "cpu.max")) == cores
  assert workers.cpu_quota(str(tmp_path / "absent")) == 1 << 30


@pytest.mark.parametrize("n", [0, 3])
def test_more_workers_than_cores_is_refused(n):
  with pytest.raises(UserError, match="choose 1 to 2"):
    workers.core_shares(n, [0, 1])


def test_a_workers_options_override_the_commands():
  parser = argparse.ArgumentParser()
  parser.add_argument("name")
  add_sweep_arguments(parser)
  args = parser.parse_args(workers.worker_command(["position", "--quick", "--workers", "2"], 1, 2))
  assert (args.name, args.quick, args.workers, args.shard, args.runs_only) == ("position", True, 1, "1/2", True)


@pytest.mark.parametrize("options", [(2, "0/2", False), (2, None, True), (0, None, False)])
def test_workers_beside_their_own_options_are_refused(options):
  with pytest.raises(UserError, match="--workers"):
    own_share(*options)


def test_workers_run_pinned_to_their_own_cores(tmp_path):
  two_cores()
  workers.run(2, command(tmp_path, "ok"))
  first, second = recorded(tmp_path, 2)
  assert first["cores"] and second["cores"] and not set(first["cores"]) & set(second["cores"])
  assert first["argv"][-5:] == ["--workers", "1", "--shard", "0/2", "--runs-only"]


@pytest.mark.parametrize("signum,reason", [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "Ctrl-C")])
def test_a_sigterm_or_ctrl_c_reaches_every_worker_and_stops_the_command(tmp_path, signum, reason):
  """Ctrl-C at a terminal reaches the workers too (one process group); here the command alone gets it, and passes
  it on."""
  two_cores()
  before = signal.signal(signal.SIGINT, signal.default_int_handler)  # even where pytest runs in the background

  def signal_once_started():
    while len(list(tmp_path.glob("*.started"))) < 2:
      time.sleep(0.05)
    os.kill(os.getpid(), signum)
  threading.Thread(target=signal_once_started, daemon=True).start()
  try:
    with pytest.raises(framework.SweepStopped, match=f"{reason}: .* run the same command to resume"):
      workers.run(2, command(tmp_path, "wait"))
  finally:
    signal.signal(signal.SIGINT, before)
  assert [r["sigterm"] for r in recorded(tmp_path, 2)] == [True, True]


def test_a_failing_worker_stops_the_others_and_is_named(tmp_path):
  two_cores()
  with pytest.raises(UserError, match=r"worker 1/2 failed \(exit status 3"):
    workers.run(2, command(tmp_path, "fail"))
  assert json.loads((tmp_path / "0of2.json").read_text())["sigterm"] is True  # the other was stopped


def test_a_shard_with_runs_only_writes_no_report(tmp_path, monkeypatch):
  """Even the shard that finishes the sweep's last run leaves the report to the command (no two write it)."""
  reports = []
  monkeypatch.setattr(framework, "train_runs", lambda *a, **kw: [])
  monkeypatch.setattr(framework, "finished_measure", lambda *a: {"test_accuracy": 1.0})  # every run finished
  monkeypatch.setattr(framework, "run", lambda *a, **kw: reports.append(a) or {})
  position = experiments.get("position")
  exp = dataclasses.replace(position, sweep=lambda quick: position.sweep(True)[:1])
  assert framework.run_shard(exp, tmp_path, (1, 2), report=False) is None and not reports
  framework.run_shard(exp, tmp_path, (1, 2))
  assert len(reports) == 1


def test_the_flagships_worker_trains_its_share_of_every_claim_and_reports_none(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(framework, "run_shard", lambda exp, out, shard, **kw: calls.append((exp, out.name, shard, kw)))
  why_gap_works.run_shard((1, 2), seeds=2, components_dir=tmp_path, get=lambda name: name)
  assert [c[0] for c in calls] == [name for _, name, _ in why_gap_works.CLAIMS]
  assert all(out == f"{exp}-quick" and shard == (1, 2) and kw["report"] is False and kw["quick"] and kw["seeds"] == 2
             for exp, out, shard, kw in calls)
