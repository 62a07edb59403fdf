"""python -m experiments <name> [--quick] [--seeds N] [--out DIR] [--shard i/n] [--runs-only] [--workers N]
[--data-parallel-runs] [--seeds-together] [--padding P]:
run one hypothesis experiment, or the flagship why_gap_works (every claim's experiment in its quick setting, one
report).
--padding P re-runs the experiment with P padding in every convolution, same seeds and data
(experiments/padding.py), into results/<name>-padding-P[-quick]; `padding_confound [--quick]` compares the
re-runs with the originals (experiments/padding_confound.py).
--shard i/n trains only every n-th of the experiment's (point, seed) runs, so that n invocations (SLURM array
tasks, or one process per device) share a sweep; the last to finish writes the report (none with --runs-only).
--workers N does that on one CPU host: N processes of their own cores each (experiments/workers.py), then the
report; the flagship's default is one per core.
A process that sees several local devices (one process, not a jax.distributed job) trains one run per device,
several at once (experiments/sweep_devices.py); --data-parallel-runs trains each run over all of them instead, one
after another, for runs too large for one device. --seeds-together trains each point's seeds as one vmapped
program (gap_jax/train.py train_together), a group of seeds per device."""

import argparse
import contextlib
import sys
import time
from pathlib import Path

from gap_jax.errors import UserError

FULL_SEEDS, QUICK_SEEDS = 10, 3


@contextlib.contextmanager
def experiment_process():
  """What every experiment command does around its work: glibc's malloc set for XLA (one restart), the
  persistent compilation cache, a refusal as one line with exit status 2, and a sweep stopped by SIGTERM as one
  line with exit status 0 (its checkpoint is saved: a scheduler requeues the same command). One StopRequest
  holds SIGTERM for the whole command: one that lands between trainings (a measure, a report, between the
  flagship's experiments) lets that work finish, and nothing new starts."""
  from experiments import workers
  from experiments.framework import SweepStopped
  from gap_jax import compilation_cache
  from gap_jax.cpu import malloc
  from gap_jax.preemption import StopRequest
  workers.pin_worker()  # a worker of --workers: its own cores
  malloc.restart_with_settings()
  compilation_cache.enable()
  try:
    with StopRequest():
      yield
  except (UserError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except SweepStopped as e:
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(0)


def train_sweep(exp, out: Path, quick: bool, seeds: int | None, shard: str | None,
                data_parallel_runs: bool = False, seeds_together: bool = False, workers: int | None = None,
                runs_only: bool = False) -> None:
  """The whole sweep, or with `shard` ("i/n") this invocation's share of it (with `runs_only` no report); its
  runs spread over the local devices unless `data_parallel_runs`, or over `workers` processes of this CPU host
  first (experiments/workers.py); a point's seeds trained together with `seeds_together`."""
  from experiments import workers as cpu_workers
  from experiments.framework import run, run_shard
  seeds = seeds or (QUICK_SEEDS if quick else FULL_SEEDS)
  share = own_share(workers, shard, runs_only)
  if share:
    run_shard(exp, out, share, quick=quick, seeds=seeds, data_parallel_runs=data_parallel_runs,
              seeds_together=seeds_together, report=not runs_only)
    return
  cpu_workers.run(workers or 1)  # every run trained and measured: below, the report alone
  run(exp, out, quick=quick, seeds=seeds, data_parallel_runs=data_parallel_runs, seeds_together=seeds_together)


def own_share(workers: int | None, shard: str | None, runs_only: bool) -> tuple[int, int] | None:
  """This invocation's share (i, n) of the runs when it trains only that (--shard, --runs-only: 0/1 if no shard),
  else None. --workers N makes the shards itself: refused beside them."""
  from experiments.framework import parse_shard
  if workers is not None and workers < 1:
    raise UserError(f"--workers {workers}: give a number of processes, 1 or more")
  if workers and workers > 1 and (shard or runs_only):
    raise UserError("--workers N splits the runs into N shards itself: leave out --shard and --runs-only (or run "
                    "each shard yourself with --shard i/n)")
  return parse_shard(shard or "0/1") if shard or runs_only else None


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
  """The options of every command that trains an experiment's sweep (this one, experiments.gap_vs_fc's)."""
  parser.add_argument("--quick", action="store_true", help="a reduced sweep that runs in a few minutes")
  parser.add_argument("--seeds", type=int, default=None,
                      help=f"seeds per point (default {FULL_SEEDS} for a full run: enough for a bootstrap interval; "
                           f"{QUICK_SEEDS} for --quick and the flagship)")
  parser.add_argument("--out", default=None,
                      help="a local folder or gs://<bucket>/<folder> (default: results/<name>, quick: results/<name>-quick)")
  parser.add_argument("--shard", default=None, metavar="i/n",
                      help="train every n-th run from the i-th; the last shard to finish writes the report")
  parser.add_argument("--runs-only", action="store_true",
                      help="train and measure the runs (of --shard's share), write no report: a later invocation "
                           "without it writes the report from them")
  parser.add_argument("--workers", type=int, default=None, metavar="N",
                      help="on a CPU host: train the runs in N processes of their own cores each (faster than one "
                           "process over every core), then write the report; default 1, for the flagship one per "
                           "core (up to 8)")
  parser.add_argument("--data-parallel-runs", action="store_true",
                      help="train each run over all local devices, one run after another (default with several "
                           "devices: one run per device, several at once), for runs too large for one device")
  parser.add_argument("--seeds-together", action="store_true",
                      help="train each point's seeds together, one jax.vmap of the training step over their "
                           "stacked states (a group of seeds per device): faster where one run leaves the device "
                           "idle; measure first with ./launch.sh bench-seeds (on CPU it is slower)")


def main() -> None:
  parser = argparse.ArgumentParser(prog="./launch.sh experiment")
  parser.add_argument("name")
  add_sweep_arguments(parser)
  parser.add_argument("--padding", default=None, metavar="P",
                      help="re-run with P (zeros or circular) padding in every convolution, same seeds and data; "
                           "default out: results/<name>-padding-P[-quick]")
  args = parser.parse_args()
  import experiments
  from experiments import padding, why_gap_works
  from gap_jax.workdir import workdir_path
  with experiment_process():
    args.out = workdir_path(args.out, "--out") if args.out else None  # local, or gs:// where its backend is installed
    if args.padding and args.name == why_gap_works.NAME:
      raise UserError("--padding re-runs one experiment, not the flagship: ./launch.sh experiment <name> --padding P")
    if args.data_parallel_runs and args.name == why_gap_works.NAME:
      raise UserError("--data-parallel-runs is for one experiment's sweep; the flagship's quick runs each fit one "
                      "device: ./launch.sh experiment <name> --data-parallel-runs")
    if args.name == why_gap_works.NAME:  # always quick: that is what keeps it under 15 minutes
      run_flagship(args)
      return
    if args.name == padding.CONFOUND:  # reads the re-runs' results: trains nothing
      if (args.padding or args.seeds or args.shard or args.data_parallel_runs or args.seeds_together or args.workers
          or args.runs_only):
        raise UserError(f"{args.name} trains nothing: it takes only --quick and --out")
      from experiments import padding_confound
      padding_confound.main(args.out or Path("results") / padding_confound.out_name(args.quick), args.quick)
      return
    exp = experiments.get(args.name)
    out = args.out or Path("results") / (args.name + ("-quick" if args.quick else ""))
    if args.padding:
      exp = padding.with_padding(exp, args.padding)
      exp.sweep(args.quick)  # a padding that changes no point is refused before any folder is made
      out = args.out or Path("results") / padding.out_name(args.name, args.padding, args.quick)
    train_sweep(exp, out, args.quick, args.seeds, args.shard, args.data_parallel_runs, args.seeds_together,
                args.workers, args.runs_only)


def run_flagship(args) -> None:
  """The flagship: its components' runs (in one worker per core of a CPU host, unless --workers says otherwise),
  then every report; with --shard or --runs-only only the runs of that share (a worker's part)."""
  from experiments import why_gap_works, workers
  seeds = args.seeds or QUICK_SEEDS
  share = own_share(args.workers, args.shard, args.runs_only)
  if share:
    why_gap_works.run_shard(share, seeds=seeds, seeds_together=args.seeds_together)
    return
  started, count = time.time(), args.workers or workers.default_count()
  workers.run(count)
  why_gap_works.run(args.out or Path("results") / args.name, seeds=seeds, seeds_together=args.seeds_together,
                    workers=count, started=started)


if __name__ == "__main__":
  main()
