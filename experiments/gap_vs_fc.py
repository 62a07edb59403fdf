"""NiN section 4.6 / table 5 as a regularization test: is global average pooling a regularizer, compared with a
fully connected head on the same class maps, with and without dropout?

Each head is trained to convergence on a Fashion-MNIST training set of a given size (each seed draws its own
random subset, shared by the three heads at that seed), and its generalization gap is measured: accuracy on
training images the run trained on (the subset itself, up to 10,000 of it) minus accuracy on the 10,000 test
images. The rule compares GAP's gap with FC's seed by seed, per training-set size.

  ./launch.sh experiment gap_vs_fc            1k, 4k and 16k images x 3 heads x 10 seeds (results/gap_vs_fc)
  .venv/bin/python -m experiments.gap_vs_fc --sizes 60000 --seeds 2
                                              all 60k, with fewer seeds (results/gap_vs_fc-60k)
  .venv/bin/python -m experiments.gap_vs_fc --dataset cifar10 --seeds 3
                                              NiN's table-5 configs on CIFAR-10, 260 epochs each: for GPUs
                                              (results/gap_vs_fc-cifar10; --quick: 2 epochs, a smoke test)

Planted controls (per-seed accuracies where GAP's gap is smaller than FC's at every size, and where it is
larger) go through decide first.
"""

import argparse
import dataclasses
import importlib
from pathlib import Path

import ml_collections
import numpy as np

from experiments.convergence import ACCURACY_CONVERGENCE
from experiments.framework import Control, Experiment, Point, Verdict, short_run, summarize_point
from experiments.stats import fmt, paired_difference, summarize
from gap_jax.errors import UserError

HEADS = {"gap": ("gap", 0.0), "fc": ("fc", 0.0), "fc_dropout": ("fc", 0.5)}
# Steps at batch 64 by training-set size, meant to let every head converge (experiments/convergence.py). GAP fits
# slowest: on 500 images it reached 0.99 train accuracy at step ~440 of 600, on 1000 0.91 after 400 (pilot runs,
# docs/experiments.md); the larger sizes are scaled from those by epochs, and the framework checks every run.
# The quick setting, 100 images for 250 steps, is what comes near the flagship's budget: at 150 steps every FC run
# fit its images (36 s a run on 2 quiet cores, 2026-12-06) but GAP reached only 0.97-0.99 in 2 of 3 seeds; 500 images
# took ~5.7 min a run on busy cores. All 60k takes 20 epochs, as 16k does: at 10 (9400 steps) GAP reached 0.978 train
# accuracy, still rising (2 seeds, 2026-12-07).
STEPS = {100: 250, 500: 500, 1000: 1000, 4000: 2000, 16000: 5000, 60000: 18800}
FULL_SIZES = (1000, 4000, 16000)  # the default sweep, 10 seeds; 60k alone with fewer (--sizes 60000)
QUICK_SIZES = (100,)
TRAIN_EXAMPLES_SCORED = 10_000  # all of a 1k or 4k subset; every image of a larger one was trained on many times
CIFAR10_ROWS = {"gap": "table5_mlpconv_gap", "fc": "table5_mlpconv_fc", "fc_dropout": "table5_mlpconv_fc_dropout"}
CIFAR10_TRAIN_SIZE = 50_000
CIFAR10_QUICK_EPOCHS = 2  # a smoke run of the GPU set-up, not a converged one


def config(head: str, size: int) -> ml_collections.ConfigDict:
  """A Fashion-MNIST point: NiN's MNIST variant on `size` training images, trained for STEPS[size]."""
  name, dropout = HEADS[head]
  if size not in STEPS:
    raise UserError(f"no step count for {size} Fashion-MNIST training images: choose sizes from {sorted(STEPS)} "
                    "(each with steps measured to converge)")
  c = short_run("nin_mnist", name, "fashion_mnist", STEPS[size], eval_train_examples=TRAIN_EXAMPLES_SCORED)
  c.head_args.fc.dropout = dropout
  c.final_relu = False  # the same class-map layer for every head; only the pooling differs
  c.dropout = 0.0  # none inside the network: the head is the only regularizer that differs, and GAP fits sooner
  c.fashion_mnist.num_train = size
  return c


def cifar10_config(head: str, quick: bool = False) -> ml_collections.ConfigDict:
  """A CIFAR-10 point: the paper's table-5 row as it stands (gap_jax/configs/paper/), 260 epochs; its train
  accuracy is scored on the first 10,000 of the 50,000 training images (eval_train_examples), all trained on."""
  c = importlib.import_module(f"gap_jax.configs.paper.{CIFAR10_ROWS[head]}").get_config()
  if quick:
    c.num_epochs = CIFAR10_QUICK_EPOCHS
  return c


def sweep_for(dataset: str = "fashion_mnist", sizes: tuple[int, ...] | None = None):
  """The sweep of one dataset: Fashion-MNIST at `sizes` (default FULL_SIZES; QUICK_SIZES when quick), or
  CIFAR-10's full training set."""
  if dataset == "cifar10":
    if sizes:
      raise UserError("--sizes is for fashion_mnist: CIFAR-10 trains on its full training set, as in table 5")
    return lambda quick: [Point(f"cifar10_{h}", {"dataset": "cifar10", "train_size": CIFAR10_TRAIN_SIZE, "head": h},
                                cifar10_config(h, quick)) for h in HEADS]
  if dataset != "fashion_mnist":
    raise UserError(f"unknown dataset {dataset!r} for gap_vs_fc: choose fashion_mnist or cifar10")
  for size in sizes or ():
    config("gap", size)  # an unknown size stops here, before any run
  return lambda quick: [Point(f"fashion_mnist_{n}_{h}", {"dataset": "fashion_mnist", "train_size": n, "head": h},
                              config(h, n))
                        for n in (sizes or (QUICK_SIZES if quick else FULL_SIZES)) for h in HEADS]


def measure(point, trained) -> dict:
  return {}  # the framework records train and test accuracy; the gaps are taken in decide


def generalization_gap(point: dict) -> dict:
  """summarize() of train - test accuracy, seed by seed."""
  return summarize(np.subtract(point["train_accuracy"]["values"], point["test_accuracy"]["values"]))


def minus_gaps(heads: dict) -> dict:
  """FC's and FC + dropout's generalization gap minus GAP's, paired by seed (the heads at one seed share their
  subset, initial key and batch order), from one size's point of each head."""
  return {other: paired_difference(generalization_gap(heads[other]), generalization_gap(heads["gap"]))
          for other in ("fc", "fc_dropout")}


def decide(summaries: dict) -> Verdict:
  effect, lines, verdicts = {}, [], []
  groups = sorted({(p["params"]["dataset"], p["params"]["train_size"]) for p in summaries.values()})
  for dataset, size in groups:
    where = f"{dataset} {size}"
    by = {p["params"]["head"]: p for p in summaries.values() if (p["params"]["dataset"], p["params"]["train_size"])
          == (dataset, size)}
    if set(by) != set(HEADS):
      verdicts.append("inconclusive")
      lines.append(f"{where}: the sweep lacks {sorted(set(HEADS) - set(by))}.")
      continue
    gap = {h: generalization_gap(by[h]) for h in HEADS}
    fc_minus_gap, dropout_minus_gap = minus_gaps(by).values()
    test_gap_minus_fc = paired_difference(by["gap"]["test_accuracy"], by["fc"]["test_accuracy"])
    verdicts.append("supported" if fc_minus_gap["lo"] > 0 else "refuted" if fc_minus_gap["hi"] < 0 else
                    "inconclusive")
    effect[f"{dataset}_{size}_gen_gap_fc_minus_gap"] = fc_minus_gap["mean"]
    effect[f"{dataset}_{size}_gen_gap_fc_dropout_minus_gap"] = dropout_minus_gap["mean"]
    effect[f"{dataset}_{size}_test_accuracy_gap_minus_fc"] = test_gap_minus_fc["mean"]
    lines.append(f"{where} images: train - test accuracy GAP {fmt(gap['gap'], 1, 3)}, FC {fmt(gap['fc'], 1, 3)}, "
                 f"FC+dropout {fmt(gap['fc_dropout'], 1, 3)}; FC - GAP by seed {fmt(fc_minus_gap, 1, 3)} "
                 f"(FC+dropout - GAP {fmt(dropout_minus_gap, 1, 3)}); test accuracy GAP "
                 f"{by['gap']['test_accuracy']['mean']:.3f}, FC {by['fc']['test_accuracy']['mean']:.3f}, FC+dropout "
                 f"{by['fc_dropout']['test_accuracy']['mean']:.3f} (GAP - FC by seed {fmt(test_gap_minus_fc, 1, 3)}) "
                 f"-> {verdicts[-1]}.")
  verdict = ("refuted" if "refuted" in verdicts else
             "supported" if verdicts and set(verdicts) == {"supported"} else "inconclusive")
  return Verdict(verdict, " ".join(lines), effect)


# Per-seed (train, test) accuracy of each head at three training-set sizes, where the claim holds and where it
# fails. Each seed's subset shifts every head's test accuracy alike (SUBSET_SPREAD), so only a comparison paired
# by seed resolves differences of 0.01-0.02.
PLANTED = {"supported": {"gap": [(0.99, 0.80), (0.99, 0.86), (0.98, 0.89)],
                         "fc": [(1.00, 0.80), (1.00, 0.86), (0.99, 0.89)],
                         "fc_dropout": [(0.99, 0.795), (0.99, 0.855), (0.985, 0.89)]},
           "refuted": {"gap": [(1.00, 0.79), (1.00, 0.85), (0.99, 0.88)],
                       "fc": [(0.99, 0.795), (0.99, 0.855), (0.98, 0.885)],
                       "fc_dropout": [(0.99, 0.795), (0.99, 0.855), (0.98, 0.885)]}}
PLANTED_SIZES = (1000, 4000, 16000)
SUBSET_SPREAD, RUN_SPREAD = 0.02, 0.003


def planted_summaries(expected: str, seeds: int = 10) -> dict:
  """Summaries of every size-head point, each seed's accuracies drawn around PLANTED[expected]."""
  rng = np.random.default_rng(0)
  points = {}
  for i, size in enumerate(PLANTED_SIZES):
    subset = SUBSET_SPREAD * rng.standard_normal(seeds)  # seed s's subset, shared by the heads
    for head, accuracies in PLANTED[expected].items():
      train, test = accuracies[i]
      runs = [{"train_accuracy": float(np.clip(train + RUN_SPREAD * rng.standard_normal(), 0, 1)),
               "test_accuracy": float(np.clip(test + subset[s] + RUN_SPREAD * rng.standard_normal(), 0, 1))}
              for s in range(seeds)]
      points[f"planted_{size}_{head}"] = summarize_point({"dataset": "planted", "train_size": size, "head": head},
                                                         runs)
  return points


def controls() -> list[Control]:
  return [Control("positive: planted accuracies, GAP's train - test gap 0.01 below FC's at 1k, 4k and 16k "
                  "images, every head's test accuracy moving with the seed's subset (sd 0.02)", "supported",
                  planted_summaries("supported")),
          Control("negative: planted accuracies, GAP's gap 0.015 above FC's at every size", "refuted",
                  planted_summaries("refuted"))]


def paired_gaps(summaries: dict) -> dict:
  """Per (dataset, size) with every head: FC's and FC + dropout's generalization gap minus GAP's, paired by seed
  (what decide rules on), as points for a figure."""
  by = {}
  for p in summaries.values():
    by.setdefault((p["params"]["dataset"], p["params"]["train_size"]), {})[p["params"]["head"]] = p
  points = {}
  for (dataset, size), heads in by.items():
    if set(heads) != set(HEADS):
      continue
    for other, difference in minus_gaps(heads).items():
      points[f"{dataset}_{size}_{other}"] = {
          "params": {"train_size": size, "comparison": f"{other.replace('_', ' + ')} - gap"},
          "generalization_gap_difference": difference}
  return points


def figures(summaries: dict, out_dir) -> list[str]:
  from experiments.plots import metric_vs_param
  with_gap = {k: {**p, "generalization_gap": generalization_gap(p)} for k, p in summaries.items()}
  log_x = len({p["params"]["train_size"] for p in summaries.values()}) > 1  # sizes grow by factors
  return [*(metric_vs_param(with_gap, "train_size", m, "head", out_dir / f"{m}_by_size.png", log_x=log_x)
            for m in ("generalization_gap", "test_accuracy")),
          metric_vs_param(paired_gaps(summaries), "train_size", "generalization_gap_difference", "comparison",
                          out_dir / "paired_gap_difference_by_size.png", level=(0.0, "no difference (the rule's 0)"),
                          log_x=log_x)]


EXPERIMENT = Experiment(
    name="gap_vs_fc",
    question="Is global average pooling a regularizer (NiN section 4.6, table 5), compared with a fully "
             "connected head on the same maps, with and without dropout?",
    hypothesis="Trained to convergence, GAP's generalization gap (accuracy on the training images it trained on "
               "minus test accuracy) is smaller than FC's at every training-set size.",
    metrics={"train_accuracy": f"accuracy on the run's own training images (up to {TRAIN_EXAMPLES_SCORED:,} of "
                               "them, eval mode)",
             "test_accuracy": "accuracy on the 10,000 test images"},
    decision_rule="Per training-set size: the 95% interval (bootstrap from 10 seeds, else t) of FC's minus GAP's "
                  "generalization gap, paired by seed (the heads at one seed share the training subset, initial "
                  "key and batch order): wholly above 0 is supported, wholly below 0 refuted, else inconclusive. "
                  "Overall: refuted if any size is refuted, supported if every size is, else inconclusive. "
                  "FC + dropout and the test accuracies are reported beside it, not ruled on. Planted controls "
                  "(a positive and a negative) must come out supported and refuted first.",
    sweep=sweep_for(), measure=measure, decide=decide, figures=figures, controls=controls,
    convergence=ACCURACY_CONVERGENCE)


def experiment(dataset: str = "fashion_mnist", sizes: tuple[int, ...] | None = None) -> Experiment:
  """EXPERIMENT on another dataset or other training-set sizes, written to its own results folder."""
  sweep = sweep_for(dataset, sizes)  # refuses a dataset or size it cannot run
  if dataset == "fashion_mnist" and not sizes:
    return EXPERIMENT
  suffix = "-".join(f"{n // 1000}k" for n in sizes) if sizes else dataset
  rule = EXPERIMENT.decision_rule
  if dataset == "cifar10" or max(sizes) >= 60000:
    rule += (" Each run here is long on a CPU (all of its training set), so this sweep is meant for fewer seeds "
             "than the default sweep's 10 (--seeds): as many as the compute at hand allows; the seed count and "
             "the training time are under Method.")
  return dataclasses.replace(EXPERIMENT, name=f"gap_vs_fc-{suffix}", sweep=sweep, decision_rule=rule)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m experiments.gap_vs_fc", description=__doc__.split("\n\n")[0])
  parser.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist (default) or cifar10")
  parser.add_argument("--sizes", type=int, nargs="+", default=None,
                      help=f"Fashion-MNIST training-set sizes, from {sorted(STEPS)} (default {list(FULL_SIZES)})")
  from experiments.__main__ import add_sweep_arguments, experiment_process, train_sweep
  add_sweep_arguments(parser)
  args = parser.parse_args(argv)
  from gap_jax.workdir import workdir_path
  with experiment_process():
    exp = experiment(args.dataset, tuple(sorted(set(args.sizes))) if args.sizes else None)
    out = workdir_path(args.out, "--out") if args.out else Path("results") / (exp.name + ("-quick" if args.quick else ""))
    train_sweep(exp, out, args.quick, args.seeds, args.shard, args.data_parallel_runs, args.seeds_together,
                args.workers, args.runs_only)


if __name__ == "__main__":
  main()
