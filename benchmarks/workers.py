"""One process over every core, or one process per core? Times the real training step (gap_jax.steps, the
experiments' models and batches, as benchmarks/seeds_vmap.py builds them) in one process that may use all N cores,
and in N processes pinned to one core each, stepping at the same time: the images per second of the machine either
way, and their ratio. This is what `--workers N` (experiments/workers.py) stakes its default on.

Run: ./launch.sh bench-workers [--workers N] [--steps 20] [--rounds 3] [--setups nin_mnist_shapes,rfnet_shapes]
  [--json FILE]
Each round starts fresh processes for both ways, in turn; each process compiles, waits until every process of its
way has compiled, then times its steps, so the timed steps of the N processes overlap.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402


def child(args) -> None:
  """One timed process: pinned to its cores, its setup's step compiled, then (once its siblings are ready) steps."""
  from gap_jax.cpu import malloc
  malloc.restart_with_settings()  # the experiments' glibc settings (a re-exec: the pinning below comes after it)
  os.sched_setaffinity(0, [int(c) for c in args.cores.split(",")])  # before JAX sizes its thread pools
  import jax
  import seeds_vmap
  c, step, _, states, orders, keys, images, labels = seeds_vmap.setup(args.child, 1)
  state = states[0]
  for _ in range(2):  # compile, and one step from warm caches
    state, _ = step(state, images, labels, orders[0], keys[0])
  jax.block_until_ready(state.params)
  open(os.path.join(args.barrier, f"ready{args.index}"), "w").close()
  while len(os.listdir(args.barrier)) < args.count:
    time.sleep(0.01)
  t = time.perf_counter()
  for _ in range(args.steps):
    state, _ = step(state, images, labels, orders[0], keys[0])
  jax.block_until_ready(state.params)
  print(json.dumps({"images_per_s": args.steps * c.batch_size / (time.perf_counter() - t)}), flush=True)


def machine_images_per_s(setup: str, shares: list[list[int]], steps: int) -> float:
  """The summed images/s of len(shares) processes, each pinned to its share, timed together."""
  with tempfile.TemporaryDirectory() as barrier:
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", setup, "--cores",
                               ",".join(map(str, share)), "--barrier", barrier, "--index", str(i), "--count",
                               str(len(shares)), "--steps", str(steps)], stdout=subprocess.PIPE, text=True)
             for i, share in enumerate(shares)]
    outputs = [p.communicate()[0] for p in procs]
  if any(p.returncode for p in procs):
    raise SystemExit(f"a timed process failed (exit statuses {[p.returncode for p in procs]}); its error is above")
  return sum(json.loads(out.strip().splitlines()[-1])["images_per_s"] for out in outputs)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  cores = sorted(os.sched_getaffinity(0))
  p.add_argument("--workers", type=int, default=len(cores), help="N (default: every core this process may use)")
  p.add_argument("--steps", type=int, default=20, help="timed steps per process and round")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--setups", default="nin_mnist_shapes,rfnet_shapes")
  p.add_argument("--json", default=None, help="also write the figures to this JSON file")
  for internal, kind in (("--child", str), ("--cores", str), ("--barrier", str), ("--index", int), ("--count", int)):
    p.add_argument(internal, type=kind, help=argparse.SUPPRESS)  # a timed process's own options
  args = p.parse_args(argv)
  if args.child:
    child(args)
    return {}
  if not 2 <= args.workers <= len(cores):
    p.error(f"--workers {args.workers}: give 2 to {len(cores)} (the cores this process may use)")
  use = cores[:args.workers]
  ways = {"one process": [use], f"{args.workers} processes": [[c] for c in use]}
  print(f"{args.workers} of {len(cores)} cores, load average {os.getloadavg()[0]:.1f}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}", flush=True)
  figures = {"workers": args.workers, "steps": args.steps, "setups": {}}
  for setup in args.setups.split(","):
    # Seconds per image of the whole machine, each way once a round, in turns (timing.interleave).
    samples = timing.interleave({way: lambda shares=shares: 1 / machine_images_per_s(setup, shares, args.steps)
                                 for way, shares in ways.items()}, args.rounds)
    one_way, many_way = samples.values()
    one, many = timing.images_per_s(one_way), timing.images_per_s(many_way)
    r = timing.ratio(many_way, one_way)
    print(f"{setup:18} one process {one:7.1f} img/s  {args.workers} processes {many:7.1f} img/s  "
          f"processes/one {r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]", flush=True)
    figures["setups"][setup] = {"one_process_images_per_s": one, "processes_images_per_s": many,
                                "processes_over_one": list(r)}
  return timing.finish(figures, args.json)


if __name__ == "__main__":
  main()
