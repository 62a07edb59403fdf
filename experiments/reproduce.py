"""./launch.sh reproduce <table> [--seeds N]: run every row of one of the paper's tables through the one
training loop and write results/reproduce/<table>.md (paper number, ours as mean and spread over seeds,
difference, time, hardware) and .json. Finished rows (a results.json in their workdir) are reused. A SIGTERM
saves the run in training, starts no other and exits 0; the same command resumes it."""

import argparse
import importlib
import json
from pathlib import Path

import numpy as np

from gap_jax.errors import UserError

# table -> rows: (label, config module under gap_jax/configs, argument for its get_config)
TABLES = {
    "cifar10": [("NIN + dropout", "paper.nin_cifar10", None),
                ("NIN + dropout + augmentation", "paper.nin_cifar10_aug", None)],
    "cifar100": [("NIN + dropout", "paper.nin_cifar100", None)],
    "svhn": [("NIN + dropout", "paper.nin_svhn", None)],
    "mnist": [("NIN + dropout", "paper.nin_mnist", None)],
    "table5": [("mlpconv + FC", "paper.table5_mlpconv_fc", None),
               ("mlpconv + FC + dropout", "paper.table5_mlpconv_fc_dropout", None),
               ("mlpconv + GAP", "paper.table5_mlpconv_gap", None)],
    "cnn": [("conventional CNN + FC", "paper.cnn_fc", None),
            ("conventional CNN + FC + dropout", "paper.cnn_fc_dropout", None),
            ("conventional CNN + GAP", "paper.cnn_gap", None)],
    "fashion_table5": [("NiN (MNIST variant) + FC", "fashion_table5", "fc"),
                       ("NiN (MNIST variant) + FC + dropout", "fashion_table5", "fc_dropout"),
                       ("NiN (MNIST variant) + GAP", "fashion_table5", "gap")],
    # Not a paper table: the Fashion-MNIST job in float32 and in bfloat16 compute (does bf16 cost accuracy?).
    "fashion_precision": [("NiN (MNIST variant) + GAP, float32", "nin_fashion_mnist", "float32"),
                          ("NiN (MNIST variant) + GAP, bfloat16", "nin_fashion_mnist", "bfloat16")],
}


def row_config(module: str, arg: str | None):
  m = importlib.import_module(f"gap_jax.configs.{module}")
  return m.get_config(arg) if arg else m.get_config(), getattr(m, "PAPER_TEST_ERROR", None)


def run_row(config, workdir: Path, stop=None) -> dict | None:
  """The run's results, trained unless its workdir holds them; None when `stop` (SIGTERM) stopped it, its
  checkpoint saved."""
  done = workdir / "results.json"
  if done.exists():
    return json.loads(done.read_text())
  from gap_jax.train import train_and_evaluate
  return train_and_evaluate(config, workdir, stop=stop)


def table_markdown(table: str, rows: list[dict]) -> str:
  lines = [f"# Reproduction: {table}", "",
           "Test error in percent; ours is the mean over seeds with its standard deviation. Time is the mean "
           "wall time of one run.", "",
           "| row | paper | ours | ours - paper | seeds | epochs | time per run | hardware |",
           "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    paper = "-" if r["paper"] is None else f"{r['paper']:.2f}"
    diff = "-" if r["paper"] is None else f"{r['mean'] - r['paper']:+.2f}"
    lines.append(f"| {r['label']} | {paper} | {r['mean']:.2f} ± {r['std']:.2f} | {diff} | {r['seeds']} | "
                 f"{r['epochs']:g} | {r['time_s'] / 60:.1f} min | {r['hardware']} |")
  return "\n".join(lines) + "\n"


def reproduce(table: str, seeds: int, runs: Path, out: Path) -> list[dict]:
  if table not in TABLES:
    raise UserError(f"unknown table {table!r}: choose one of {sorted(TABLES)}")
  from experiments.framework import SweepStopped
  from gap_jax.preemption import stop_request
  rows = []
  with stop_request() as stop:  # the command's: one SIGTERM stops the run in training and starts no other
    for label, module, arg in TABLES[table]:
      config, paper = row_config(module, arg)
      results = []
      for s in range(seeds):
        workdir = runs / table / f"{module}{'-' + arg if arg else ''}" / f"seed{s}"
        result = None if stop.requested else run_row(_with_seed(config, s), workdir, stop)
        if result is None:
          raise SweepStopped(f"{stop.reason}: {label!r} seed {s} unfinished ({workdir}, with its checkpoint if it "
                             f"had begun training); rows finished so far: {out / table}.md; run the same command "
                             "to resume")
        results.append(result)
      rows.append(row_summary(label, module, arg, paper, results))
      out.mkdir(parents=True, exist_ok=True)  # rewritten after every row: a partial table is still a table
      (out / f"{table}.md").write_text(table_markdown(table, rows))
      (out / f"{table}.json").write_text(json.dumps(rows, indent=2))
  return rows


def row_summary(label: str, module: str, arg: str | None, paper, results: list[dict]) -> dict:
  """A table row from its seeds' results (one each): test error in percent, mean and spread."""
  from experiments.framework import run_clock
  seeds = len(results)
  errors = np.array([100 * (1 - r["final"]["test_accuracy"]) for r in results])
  hw = results[0]["hardware"]
  return {"label": label, "config": module + (f":{arg}" if arg else ""), "paper": paper,
          "mean": float(errors.mean()), "std": float(errors.std(ddof=1)) if seeds > 1 else 0.0,
          "errors": errors.tolist(), "seeds": seeds, "epochs": results[0]["epochs"],
          "time_s": float(np.mean([run_clock(r)["train_time_s"] for r in results])),  # every session of a run
          "hardware": f"{hw['device_count']} x {hw['device_kind']} ({hw['cpu_count']} CPU cores)"}


def _with_seed(config, seed: int):
  config = config.copy_and_resolve_references()
  config.seed = seed
  return config


def main() -> None:
  parser = argparse.ArgumentParser(prog="./launch.sh reproduce")
  parser.add_argument("table", help=f"one of {sorted(TABLES)}")
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--runs", type=Path, default=Path("runs/reproduce"), help="workdirs of the runs")
  parser.add_argument("--out", type=Path, default=Path("results/reproduce"))
  args = parser.parse_args()
  from experiments.__main__ import experiment_process
  with experiment_process():  # malloc, compilation cache, one-line errors, SIGTERM -> exit 0
    reproduce(args.table, args.seeds, args.runs, args.out)


if __name__ == "__main__":
  main()
