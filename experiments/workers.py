"""An experiment command's runs in several processes of one CPU host (`--workers N`): N copies of the command,
each given `--shard i/N --runs-only` and pinned to its own share of the cores, train and measure the runs; the
command itself then writes the report from their finished runs (it trains nothing more). On a CPU, processes of
one core each train more images per second than one process over every core: at the experiments' small batches
XLA's threads wait on each other at every operation (the gap_vs_fc NiN at batch 64 on 2 Zen 4 cores: 726 images/s
in two one-core processes against 565 in one two-core process). Accelerators need none of this: one process
spreads its runs over its devices (experiments/sweep_devices.py).

A SIGTERM to the command is passed to every worker (each saves its checkpoint and stops); a worker that fails
stops the others the same way. Either way the command exits as one process would, and the same command resumes."""

import os
import signal
import subprocess
import sys
import time

from experiments.framework import SweepStopped
from gap_jax.errors import UserError
from gap_jax.preemption import stop_request

CORES_ENV = "GAP_JAX_WORKER_CORES"  # a worker's cores, "0,1": it pins itself (pin_worker) before JAX starts threads
# Each worker holds its own datasets and compiled programs (up to 1.7 GB for the flagship's runs), so the flagship's
# default of one worker per core stops here on large hosts; --workers N sets any count.
MAX_DEFAULT_WORKERS = 8


def default_count() -> int:
  """The flagship's default: one worker per core this process may use (up to MAX_DEFAULT_WORKERS); 1 on an
  accelerator or in a multi-process job."""
  if not_allowed():
    return 1
  return max(1, min(len(os.sched_getaffinity(0)), cpu_quota(), MAX_DEFAULT_WORKERS))


def cpu_quota(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
  """The cores' worth of time a cgroup v2 quota allows (a container's --cpus, rounded down), or a large number
  where there is none: a container may see every core of its host and be allowed two."""
  try:
    quota, period = open(cpu_max).read().split()[:2]
    return int(quota) // int(period) if quota != "max" else 1 << 30
  except (OSError, ValueError):
    return 1 << 30


def core_shares(n: int, cores=None) -> list[list[int]]:
  """This process's cores (or `cores`) cut into n contiguous shares as even as they come, one per worker."""
  cores = sorted(os.sched_getaffinity(0) if cores is None else cores)
  if not 1 <= n <= len(cores):
    raise UserError(f"--workers {n}: this process may run on {len(cores)} CPU cores, and each worker needs one of its "
                    f"own: choose 1 to {len(cores)}")
  return [cores[i * len(cores) // n:(i + 1) * len(cores) // n] for i in range(n)]


def not_allowed() -> str | None:
  """Why this process may not start workers, or None: they are processes of one CPU host, so not on an
  accelerator (its runs spread over the devices) nor in a multi-process job (every process takes part in every
  run)."""
  import jax
  if jax.process_count() > 1:
    return "--workers starts processes on one host; in a multi-process job leave it out (or use --shard per job)"
  if jax.default_backend() != "cpu":
    return (f"--workers is for CPU hosts; on {jax.default_backend()} this command already trains one run per device "
            "at a time: leave --workers out")
  return None


def pin_worker() -> None:
  """In a worker (its command's environment names its cores): keep this process to them. Called first thing,
  before JAX sizes its thread pools by the cores it may use."""
  cores = os.environ.get(CORES_ENV)
  if cores:
    os.sched_setaffinity(0, [int(c) for c in cores.split(",")])


def worker_command(command: list[str], i: int, n: int) -> list[str]:
  """The command worker i of n runs: the same one, with the options that make it one worker (the last occurrence
  of an option is the one argparse keeps)."""
  return [*command, "--workers", "1", "--shard", f"{i}/{n}", "--runs-only"]


def run(n: int, command: list[str] | None = None, poll_s: float = 0.1) -> None:
  """Run worker_command(command, i, n) for every i at once, each pinned to its share of the cores, and wait for
  all; nothing for n = 1 (the command trains its runs itself). `command` defaults to this process's own command
  line. Raises SweepStopped on SIGTERM and UserError when a worker fails (after the others stopped)."""
  if n <= 1:
    return
  if reason := not_allowed():
    raise UserError(reason)
  shares = core_shares(n)
  command = command or [sys.executable, *sys.orig_argv[1:]]
  print(f"[workers] {n} processes on cores {', '.join('+'.join(map(str, s)) for s in shares)}", flush=True)
  with stop_request() as stop:
    procs, signalled = [], False
    try:
      for i, s in enumerate(shares):
        # The child pins itself: a preexec_fn would fork this process, whose JAX threads are running, in Python.
        procs.append(subprocess.Popen(worker_command(command, i, n),
                                      env={**os.environ, CORES_ENV: ",".join(map(str, s))}))
      while None in [p.poll() for p in procs]:  # a list, not any(): every worker's exit is seen at once
        failed = [p for p in procs if p.returncode not in (None, 0)]
        if (stop.requested or failed) and not signalled:
          for p in procs:
            if p.poll() is None:
              p.send_signal(signal.SIGTERM)  # each saves its checkpoint at its next step
          signalled = True
        time.sleep(poll_s)
    finally:  # this process interrupted (KeyboardInterrupt, a failed start): no worker outlives it
      for p in procs:
        if p.poll() is None:
          p.terminate()
          p.wait()
  failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
  if failed:
    i, code = failed[0]
    raise UserError(f"worker {i}/{n} failed (exit status {code}; its error is above); every finished run is kept: "
                    "run the same command to resume")
  if stop.requested:
    raise SweepStopped(f"{stop.reason}: the {n} workers stopped, their runs' checkpoints saved; run the same command "
                       "to resume")
