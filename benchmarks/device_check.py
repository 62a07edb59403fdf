"""One check of an accelerator machine, for when one is lent (about 8 minutes on one GPU; no network needed):

  .venv/bin/python benchmarks/device_check.py --out device_check.json [--quick]

1. bench: images/s and MFU of the CIFAR-10 NiN's training step in float32 and bfloat16
   (benchmarks/train_step.py --parts peak,nin,pipeline --variants train,bf16 --no-torch);
2. train: train_and_evaluate on CIFAR-shaped generated data (32x32x3 synthetic motifs, NiN CIFAR-10
   definition), float32 and bfloat16, which must learn (test accuracy well above chance);
3. seeds: the experiments' models trained 3 seeds together under jax.vmap against one after another
   (benchmarks/seeds_vmap.py): on CPU vmap is slower; this says which way is faster on the accelerator;
4. flagship: the why_gap_works quick report (every claim's experiment), its verdicts and time.
Everything goes into one JSON file, written after each part, so a part that fails or runs out of time leaves
the earlier ones. Each part's failure is recorded, not raised, and the exit status is 1 if any failed.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bench(quick: bool, scratch: Path) -> dict:
  out = scratch / "bench.json"
  steps, rounds = ("2", "3") if quick else ("10", "5")
  subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--parts", "peak,nin,pipeline",
                  "--models", "nin", "--variants", "train,bf16", "--no-torch", "--steps", steps, "--rounds", rounds,
                  "--json", str(out)], check=True, cwd=ROOT)
  return json.loads(out.read_text())


def training_config(dtype: str, steps: int):
  from gap_jax.configs import default
  c = default.get_config()
  c.model, c.dataset, c.compute_dtype = "nin", "synthetic", dtype
  c.synthetic.image_size, c.synthetic.channels, c.synthetic.num_classes = 32, 3, 10
  c.synthetic.num_train, c.synthetic.num_test, c.synthetic.motif_size = 20_000, 2_000, 7
  c.batch_size, c.num_train_steps, c.eval_every_steps = 128, steps, steps
  c.learning_rate, c.warmup_steps = 1e-3, 50
  return c


def train(quick: bool, scratch: Path) -> dict:
  from gap_jax.train import train_and_evaluate
  runs = {}
  for dtype in ("float32", "bfloat16"):
    t0 = time.time()
    results = train_and_evaluate(training_config(dtype, 100 if quick else 600), scratch / f"train_{dtype}")
    runs[dtype] = {"test_accuracy": results["final"]["test_accuracy"], "chance": 0.1,
                   "train_accuracy": results["final"]["train_accuracy"], "wall_time_s": time.time() - t0,
                   "steps": results["steps"], "hardware": results["hardware"]}
  return runs


def seeds(quick: bool, scratch: Path) -> dict:
  out = scratch / "seeds.json"
  setups, steps, rounds = ("rfnet_shapes", "1", "2") if quick else ("rfnet_shapes,rfnet_arrangement,nin_mnist_shapes",
                                                                     "5", "5")
  subprocess.run([sys.executable, str(ROOT / "benchmarks" / "seeds_vmap.py"), "--setups", setups, "--steps", steps,
                  "--rounds", rounds, "--json", str(out)], check=True, cwd=ROOT)
  return json.loads(out.read_text())


def flagship(quick: bool, scratch: Path) -> dict:
  from experiments import why_gap_works
  t0 = time.time()
  results = why_gap_works.run(scratch / "why_gap_works", seeds=2 if quick else 3, components_dir=scratch)
  return {"wall_time_s": time.time() - t0, "verdicts": {
      claim["experiment"]: claim["verdict"]["verdict"] for claim in results["claims"]}}


PARTS = {"bench": bench, "train": train, "seeds": seeds, "flagship": flagship}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", type=Path, required=True, help="the JSON file to write")
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {list(PARTS)}")
  p.add_argument("--quick", action="store_true", help="fewer steps: a smoke test of the check itself")
  args = p.parse_args(argv)
  parts = args.parts.split(",")
  unknown = [x for x in parts if x not in PARTS]
  if unknown:
    p.error(f"unknown part {unknown}: choose from {list(PARTS)}")
  report, failed = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": args.quick}, False
  with tempfile.TemporaryDirectory() as scratch:
    for name in parts:
      t0 = time.time()
      print(f"[device_check] {name}...", flush=True)
      try:
        report[name] = PARTS[name](args.quick, Path(scratch))
      except Exception:  # keep the other parts' figures: this is a survey of a machine we hold briefly
        report[name] = {"error": traceback.format_exc()[-3000:]}
        failed = True
      report[name + "_s"] = time.time() - t0
      args.out.write_text(json.dumps(report, indent=2, default=str))
  print(f"[device_check] wrote {args.out}" + (" (some parts failed)" if failed else ""))
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
