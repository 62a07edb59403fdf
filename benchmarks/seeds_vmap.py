"""Seeds together or one after another? Times S seeds of the real training step (gap_jax.steps) two ways: the
set-up's vmapped step over the seeds' stacked states (one step advances every seed: what `--seeds-together`
trains with), and the S states stepped one after another (the experiments' default). Same images for both; each
seed its own initialization, data order, augmentation and dropout.

Run: ./launch.sh bench-seeds [--seeds 3] [--steps 3] [--rounds 5] [--setups rfnet_shapes,nin_mnist_shapes,...]
  [--json FILE]
Prints images/s per seed-step for each way and the ratio vmap / sequential, for the experiments' models (and
writes them to FILE: benchmarks/device_check.py's "seeds" part, the accelerator's answer to which way is faster).
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

from gap_jax.configs import default
from gap_jax.data import Dataset, Split
from gap_jax.data.specs import SPECS
from gap_jax.steps import run_keys, stacked
from gap_jax.training_setup import build_training_setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402

# name -> (model, model_args, dataset, batch): the settings the hypothesis experiments train.
SETUPS = {
    "rfnet_shapes": ("rfnet", {"depth": 4, "width": 16, "dilation": 2}, "shapes", 64),
    "rfnet_arrangement": ("rfnet", {"depth": 4, "width": 16, "dilation": 2}, "arrangement", 64),
    "nin_mnist_shapes": ("nin_mnist", {}, "shapes", 64),
}


def setup(name: str, seeds: int):
  model_name, model_args, dataset, batch = SETUPS[name]
  c = default.get_config()
  c.update(model=model_name, dataset=dataset, batch_size=batch, final_relu=False, dropout=0.0)
  c.model_args[model_name].update(model_args)
  num_classes, size = SPECS[dataset].num_classes, c[dataset].image_size
  rng = np.random.default_rng(0)
  n = batch * 16
  split = Split(rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8),
                rng.integers(0, num_classes, n, dtype=np.int32))
  run = build_training_setup(c, Dataset(f"random {dataset}", split, split, num_classes, np.float32([0.5]),
                                        np.float32([0.25])))
  images, labels, _, _ = run.on_device()
  # Each seed's keys as its own run would draw them (gap_jax/steps.py run_keys).
  init_keys, order_keys, step_keys = zip(*(run_keys(s) for s in range(seeds)))
  states = [run.init(k) for k in init_keys]
  orders = [run.epoch_order(k, 0) for k in order_keys]
  return c, run.train_step, run.train_steps_together, states, orders, list(step_keys), images, labels


def contestants(name: str, seeds: int, steps: int):
  c, step, together, states, orders, keys, images, labels = setup(name, seeds)

  # One after another: each seed's state through the jitted step, as separate runs would do.
  seq_states = list(states)

  def sequential():
    for i in range(seeds):
      seq_states[i], _ = step(seq_states[i], images, labels, orders[i], keys[i])
    return seq_states[-1].params

  # Together: what --seeds-together runs (gap_jax/train.py train_together): the set-up's vmapped step over the
  # seeds' states, data, orders, keys and (mean, std), each stacked on a leading seed axis.
  state_S = [stacked(states)]
  data_S = stacked([(images, labels, order, key, *step.bound) for order, key in zip(orders, keys)])

  def vmapped():
    state_S[0], _ = together(state_S[0], *data_S)
    return state_S[0].params

  t = time.perf_counter()
  jax.block_until_ready(vmapped())
  compile_s = time.perf_counter() - t
  jax.block_until_ready(sequential())
  images_per_round = c.batch_size * seeds  # one call of either advances every seed by one step
  return compile_s, {"sequential": timing.timed(sequential, steps, images_per_round, jax.block_until_ready),
                     "vmap": timing.timed(vmapped, steps, images_per_round, jax.block_until_ready)}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=3)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--setups", default=",".join(SETUPS), help=f"comma-separated, of {list(SETUPS)}")
  p.add_argument("--json", default=None, help="also write the figures to this JSON file")
  args = p.parse_args(argv)
  unknown = [s for s in args.setups.split(",") if s not in SETUPS]
  if unknown:
    p.error(f"unknown setup {unknown}: choose from {list(SETUPS)}")
  print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; jax {jax.__version__}; "
        f"{jax.devices()[0].device_kind}; {args.seeds} seeds; {time.strftime('%Y-%m-%d %H:%M')}")
  figures = {"device_kind": jax.devices()[0].device_kind, "seeds": args.seeds, "setups": {}}
  for name in args.setups.split(","):
    compile_s, runs = contestants(name, args.seeds, args.steps)
    samples = timing.interleave(runs, args.rounds)
    ips = {k: timing.images_per_s(v) for k, v in samples.items()}
    r = timing.ratio(samples["vmap"], samples["sequential"])
    print(f"{name:18} sequential {ips['sequential']:7.1f} img/s  vmap {ips['vmap']:7.1f} img/s  "
          f"vmap/sequential {r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}]  (vmap compile {compile_s:.1f}s; spread "
          f"{100 * timing.spread(samples['sequential']):.0f}% / {100 * timing.spread(samples['vmap']):.0f}%)",
          flush=True)
    figures["setups"][name] = {"sequential_images_per_s": ips["sequential"], "vmap_images_per_s": ips["vmap"],
                               "vmap_over_sequential": list(r), "vmap_compile_s": compile_s}
  return timing.finish(figures, args.json)


if __name__ == "__main__":
  main()
