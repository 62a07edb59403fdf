"""What every hypothesis experiment does, written once: run a declared sweep of training configs for
several seeds through the one training loop (finished runs are found and reused), measure each trained
model, summarize across seeds, apply the declared decision rule, and write results.json, report.md and
figures into results/<experiment>/.

An experiment module defines an `Experiment`: its question, hypothesis, metrics and decision rule (all
stated before anything runs), `sweep(quick)` -> points, `measure(point, trained)` -> numbers for one
run, `decide(summaries)` -> Verdict, and optionally `figures(summaries, out_dir)` -> PNG names.

Every measure is also taken of the same network at initialization (the run's own initial weights), under
`untrained/<metric>`: the null baseline a trained result must depart from. An experiment's `controls()`
gives planted data that obeys the claim (expected "supported") and data that violates it ("refuted"), as
summaries made by the experiment's own measure; they go through its own `decide` before any training, and
a measure that cannot tell them apart leaves the experiment's verdict inconclusive, whatever the runs say.
An experiment that declares a `convergence` criterion (experiments/convergence.py) has every run checked
against it; a verdict resting on a point with fewer than 2 converged runs is inconclusive.

A process with several local devices trains one run per device, several at once (experiments/sweep_devices.py);
`data_parallel_runs` trains each run over all of them instead, one after another. Either way the results are
gathered in (point, seed) order.
"""

import dataclasses
import itertools
import json
import time
from collections.abc import Callable

import jax
import ml_collections
from etils import epath  # each run folder is a workdir, an epath.Path as gap_jax/workdir.py takes it

from experiments import report, shortcuts, stats, sweep_devices
from experiments.convergence import Convergence, trend
from experiments.progress import SweepProgress, steps_done
from gap_jax.configs import default
from gap_jax.data import load_dataset
from gap_jax.errors import UserError
from gap_jax.preemption import StopRequest, stop_request
from gap_jax.train import hardware, train_together
from gap_jax.trained import initial, load_trained
from gap_jax.workdir import stored_config_differences

VERDICTS = ("supported", "refuted", "inconclusive")


class SweepStopped(Exception):
  """A run of the sweep stopped early (SIGTERM): its checkpoint is saved, and running the same command resumes
  it and reuses every finished run."""


@dataclasses.dataclass
class Point:
  key: str  # unique and filesystem-safe, e.g. "head-gap_dilation-2"
  params: dict  # what varies at this point, for tables and plots
  config: ml_collections.ConfigDict  # the training config (the framework sets the seed)


@dataclasses.dataclass
class Verdict:
  verdict: str  # one of VERDICTS
  reason: str  # the numbers the verdict rests on, in words
  effect: dict  # the effect sizes, by name
  # The points whose runs the verdict rests on (default: every point that learned); only these need converged runs.
  # Descriptive points (position's intermediate fields, reported as measured) may still be learning.
  rests_on: list[str] | None = None


def point_keys(summaries: dict, points: list[dict]) -> list[str]:
  """The keys of `points` (summaries that decide picked out of `summaries`), in the summaries' order: what a
  Verdict's rests_on names."""
  return [key for key, s in summaries.items() if any(s is p for p in points)]


@dataclasses.dataclass
class Control:
  name: str  # e.g. "positive: planted maps where every absent map lies below the present one"
  expected: str  # the verdict decide must return: "supported" (obeys the claim) or "refuted"
  summaries: dict  # what decide takes, made from planted data by the experiment's own measure


@dataclasses.dataclass
class Experiment:
  name: str
  question: str
  hypothesis: str
  metrics: dict[str, str]  # name -> what it measures
  decision_rule: str
  sweep: Callable[[bool], list[Point]]
  measure: Callable[[Point, object], dict[str, float]]
  decide: Callable[[dict], Verdict]
  figures: Callable[[dict, epath.Path], list[str]] | None = None
  controls: Callable[[], list[Control]] | None = None
  # A run whose final train accuracy is below this did not learn the task: it is left out of the summaries
  # (and counted in the report), so a verdict rests only on networks that fit their data.
  train_accuracy_floor: float = 0.0
  # When set, each run's `converged` (0 or 1) is recorded by this criterion, and a point that decides the
  # verdict needs 2 converged runs.
  convergence: Convergence | None = None


# What a measured.json holds; one written under another format is measured again (not retrained). Raise it
# whenever an experiment's measure changes. 3: localization and rf_coverage score margin maps; 4: localization by
# a fixed protocol (thresholds chosen on a held-out split).
MEASURED_FORMAT = 4


def summarize_point(params: dict, runs: list[dict], floor: float = 0.0) -> dict:
  """A point's summary, metric by metric, across its seeds that reached the train-accuracy floor: what
  decide takes. `below_floor` counts the seeds that did not; they are `excluded` unless fewer than 2 would
  remain: then all are kept for the tables, and the point has not `learned` (decide does not see it)."""
  fit = [r for r in runs if r.get("train_accuracy", 1.0) >= floor]
  kept = fit if len(fit) >= 2 else runs
  return {"params": params, "below_floor": len(runs) - len(fit), "excluded": len(runs) - len(kept),
          "learned": len(fit) >= 2, **{metric: stats.summarize([r[metric] for r in kept]) for metric in runs[0]}}


def check_controls(exp: Experiment) -> list[dict]:
  """Each control through the experiment's own decide: its verdict, and whether it is the expected one."""
  checked = []
  for control in exp.controls() if exp.controls else []:
    verdict = exp.decide(control.summaries)
    checked.append({"name": control.name, "expected": control.expected, "verdict": verdict.verdict,
                    "reason": verdict.reason, "passed": verdict.verdict == control.expected})
  return checked


def shortcut_baselines(points: list[Point]) -> dict[str, dict]:
  """Each point's dataset's shortcut baselines (experiments/shortcuts.py), computed once per dataset."""
  by_data, out = {}, {}
  for p in points:
    data_key = json.dumps({k: p.config.get(k) for k in ("dataset", p.config.dataset)}, default=str, sort_keys=True)
    if data_key not in by_data:
      by_data[data_key] = shortcuts.baselines(load_dataset(p.config))
    out[p.key] = by_data[data_key]
  return out


def short_run(model: str, head: str, dataset: str, steps: int, *, eval_train_examples: int = 1024,
              **model_args) -> ml_collections.ConfigDict:
  """The experiments' shared training recipe: default.py's Adam at lr 2e-3 (30 warm-up steps), batch 64,
  `steps` steps and one evaluation at the end; `model_args` go to the model (e.g. RFNet's dilation)."""
  c = default.get_config()
  c.model, c.head, c.dataset = model, head, dataset
  c.model_args[model].update(model_args)  # the model's own section (config.model_args.<model>)
  c.num_train_steps = c.eval_every_steps = steps
  c.batch_size, c.learning_rate, c.warmup_steps = 64, 2e-3, 30
  c.eval_train_examples = eval_train_examples
  return c


def seed_config(point: Point, seed: int) -> ml_collections.ConfigDict:
  """The training config of one seed of a point: its own initial weights and batch order, and for generated
  data its own draw of the dataset."""
  config = ml_collections.ConfigDict(point.config.to_dict())
  config.seed = seed
  generated = config.get(config.dataset)
  if generated is not None and "seed" in generated:
    generated.seed = seed
  return config


def run_dir(runs_dir: epath.Path, point: Point, seed: int) -> epath.Path:
  """The workdir of one seed of a point."""
  return epath.Path(runs_dir) / point.key / f"seed{seed}"


def run_clock(results: dict) -> dict:
  """A run's training time from its results.json: train_time_s over every invocation since step
  train_time_from_step (0 unless it resumed from a checkpoint that kept no time). Results written before runs
  kept their time give the last invocation's, counted from the step it resumed from."""
  return {"train_time_s": results.get("train_time_s", results["wall_time_s"]),
          "train_time_from_step": results.get("train_time_from_step", results.get("resumed_from_step", 0))}


def finished_measure(point: Point, seed: int, runs_dir: epath.Path) -> dict | None:
  """What a finished run of this seed measured, if it was trained with the point's config as it is now and
  measured in the current format; else None."""
  workdir = run_dir(runs_dir, point, seed)
  if stored_config_differences(workdir, seed_config(point, seed)) != [] or not (workdir / "measured.json").exists():
    return None
  measured = json.loads((workdir / "measured.json").read_text())
  if measured.pop("format", None) != MEASURED_FORMAT:
    return None
  if "train_time_from_step" not in measured:  # measured before runs kept their time: read it as it was
    measured.update(run_clock(json.loads((workdir / "results.json").read_text())))
  return measured


def run_seeds(exp: Experiment, point: Point, seeds: list[int], runs_dir: epath.Path,
              stop: StopRequest | None = None) -> list[dict | None]:
  """Train (or find) these seeds of one point and measure each; None for each run whose training SIGTERM (or
  `stop`, shared with runs in other threads) stopped, its checkpoint saved. Seeds that need training train
  together (gap_jax.train.train_together: one vmapped step) when there are several. measured.json makes a run
  reusable while the point's config stays what the run was trained with; a changed config retrains (the old
  run is kept in the workdir's previous/)."""
  measured = {seed: finished_measure(point, seed, runs_dir) for seed in seeds}
  unmeasured = [seed for seed in seeds if measured[seed] is None]
  workdirs = {seed: run_dir(runs_dir, point, seed) for seed in unmeasured}
  configs = {seed: seed_config(point, seed) for seed in unmeasured}
  results = {seed: json.loads((workdirs[seed] / "results.json").read_text())  # trained, measured in another format
             for seed in unmeasured
             if stored_config_differences(workdirs[seed], configs[seed]) == []
             and (workdirs[seed] / "results.json").exists()}
  untrained = [seed for seed in unmeasured if seed not in results]
  if untrained:
    results.update(zip(untrained, train_together(
        [configs[seed] for seed in untrained], [workdirs[seed] for seed in untrained], on_config_change="fresh",
        stop=stop, label=f"{point.key}/seed{','.join(map(str, untrained))}")))
  for seed in unmeasured:
    if results[seed] is not None:
      measured[seed] = measure_run(exp, point, workdirs[seed], results[seed])
  return [measured[seed] for seed in seeds]


def measure_run(exp: Experiment, point: Point, workdir: epath.Path, results: dict) -> dict:
  """The measures of one trained run and of its initial weights (untrained/...), written to measured.json."""
  measured = {"test_accuracy": results["final"]["test_accuracy"],
              "train_accuracy": results["final"]["train_accuracy"], **run_clock(results)}
  trained = load_trained(workdir)
  measured.update(exp.measure(point, trained))
  measured.update({f"untrained/{k}": v for k, v in exp.measure(point, initial(trained)).items()})
  (workdir / "measured.json").write_text(json.dumps({**measured, "format": MEASURED_FORMAT}, indent=2))
  return measured


def seed_groups(runs: list[tuple[Point, int]], together: bool) -> list[tuple[Point, list[int]]]:
  """The runs as (point, seeds) groups, in order: with `together` each point's consecutive seeds in one group
  (trained together), else one seed a group."""
  if not together:
    return [(point, [seed]) for point, seed in runs]
  groups = [list(group) for _, group in itertools.groupby(runs, key=lambda run: id(run[0]))]
  return [(group[0][0], [seed for _, seed in group]) for group in groups]


def progress_of(groups: list[tuple[Point, list[int]]], runs_dir: epath.Path) -> SweepProgress:
  """The sweep's progress keeper: each group's training steps left (none for a finished run; a run's config
  less its checkpoint's step), or None where a config sets epochs rather than steps."""
  def left(point, seed):
    if finished_measure(point, seed, runs_dir) is not None:
      return 0
    return max(0, point.config.num_train_steps - steps_done(run_dir(runs_dir, point, seed)))
  return SweepProgress([sum(left(p, s) for s in seeds) if p.config.get("num_train_steps") else None
                        for p, seeds in groups], [len(seeds) for _, seeds in groups])


def train_runs(exp: Experiment, runs: list[tuple[Point, int]], runs_dir: epath.Path,
               data_parallel_runs: bool = False, shard: str = "", seeds_together: bool = False) -> list[dict]:
  """run_seeds of each (point, seed) in `runs`, in that order: spread over the local devices, one run per device
  at a time (sweep_devices), or with `data_parallel_runs` (or one device) each over every device, one after
  another. With `seeds_together` a point's seeds train together (one vmapped step) where each run would train
  alone: a group of seeds per device. A run stopped by SIGTERM stops the sweep (SweepStopped) once the runs in
  training saved their checkpoints; no later run starts."""
  devices = sweep_devices.spread_devices(data_parallel_runs)
  if seeds_together and devices is None and len(jax.devices()) > 1:
    raise UserError("--seeds-together trains each point's seeds on one device, and these runs train over all "
                    f"{len(jax.devices())} devices (--data-parallel-runs or several processes): leave one out")
  groups = seed_groups(runs, seeds_together)
  describe = lambda point, seeds: f"{point.key} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
  if devices is None:
    measured, sweep = [], progress_of(groups, runs_dir)
    # One request for the whole sweep (the command's): a SIGTERM while a run is measured (or between runs) lets
    # that run finish its measure and starts no other, as one during training saves the checkpoint.
    with stop_request() as stop:
      for i, (point, seeds) in enumerate(groups):
        if stop.requested:
          break
        print(f"[{exp.name}] {shard}{describe(point, seeds)} ({sweep.start(i)})", flush=True)
        measured.extend(run_seeds(exp, point, seeds, runs_dir, stop=stop))
        if None in measured:
          break
        sweep.finish(i)
  else:
    sweep = progress_of(groups, runs_dir)  # runs train side by side here: their count, no ETA

    def on_device(item, device, stop):
      i, group = item
      print(f"[{exp.name}] {shard}{describe(*group)} on {device} ({sweep.start(i)})", flush=True)
      return run_seeds(exp, *group, runs_dir, stop=stop)
    indexed = list(enumerate(groups))
    measured = [m for group, ms in zip(groups, sweep_devices.map_on_devices(on_device, indexed, devices))
                for m in (ms or [None] * len(group[1]))]
  unfinished = [f"{point.key}/seed{seed}" for (point, seed), m in itertools.zip_longest(runs, measured) if m is None]
  if unfinished:
    raise SweepStopped(f"{len(unfinished)} of {len(runs)} runs unfinished ({', '.join(unfinished)}), those "
                       f"that were training with their checkpoints saved in {runs_dir}; run the same command "
                       "to resume")
  return measured


def parse_shard(text: str) -> tuple[int, int]:
  """"i/n" -> (i, n): this invocation trains every n-th (point, seed) run, starting at the i-th."""
  try:
    i, n = (int(x) for x in text.split("/"))
  except ValueError:
    i, n = -1, 0
  if not 0 <= i < n:
    raise UserError(f"--shard {text!r}: give i/n with 0 <= i < n, e.g. --shard 0/4 (SLURM arrays: "
                    "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
  return i, n


def run_shard(exp: Experiment, out_dir: epath.Path, shard: tuple[int, int], quick: bool = False,
              seeds: int = 3, data_parallel_runs: bool = False, seeds_together: bool = False,
              report: bool = True) -> dict | None:
  """Train and measure shard i of n of the experiment's (point, seed) runs (spread over this process's devices
  as train_runs says); the invocations may run at once on other devices or hosts that share `out_dir`. The one
  that finds every run finished writes the report (and returns the results), unless `report` is False (the
  report is then another invocation's: --runs-only); the others return None."""
  i, n = shard
  points = exp.sweep(quick)
  runs = [(point, seed) for point in points for seed in range(seeds)]
  train_runs(exp, runs[i::n], epath.Path(out_dir) / "runs", data_parallel_runs, shard=f"shard {i}/{n}: ",
             seeds_together=seeds_together)
  if not report:
    return None
  left = sum(finished_measure(point, seed, epath.Path(out_dir) / "runs") is None for point, seed in runs)
  if left:
    print(f"[{exp.name}] shard {i}/{n} done; {left} of {len(runs)} runs are still with other shards: the "
          "last shard to finish writes the report", flush=True)
    return None
  return run(exp, out_dir, quick, seeds, data_parallel_runs, seeds_together)


def run(exp: Experiment, out_dir: epath.Path, quick: bool = False, seeds: int = 3,
        data_parallel_runs: bool = False, seeds_together: bool = False) -> dict:
  if seeds < 2:
    raise ValueError("an experiment needs at least 2 seeds per point for an interval (3 by default)")
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  t0 = time.time()
  controls = check_controls(exp)  # before any training: a measure that fails them is known at once
  for c in controls:
    print(f"[{exp.name}] control {c['name']}: {c['verdict']} (expected {c['expected']})", flush=True)
  points = exp.sweep(quick)
  measured = iter(train_runs(exp, [(point, seed) for point in points for seed in range(seeds)], out_dir / "runs",
                             data_parallel_runs, seeds_together=seeds_together))
  raw, summaries = {}, {}
  for point in points:
    raw[point.key] = [next(measured) for _ in range(seeds)]
    if exp.convergence:
      for seed, r in enumerate(raw[point.key]):
        moved = trend(run_dir(out_dir / "runs", point, seed) / "metrics.jsonl", exp.convergence.window)
        r["converged"] = float(exp.convergence.converged({**r, **moved}))
    summaries[point.key] = summarize_point(point.params, raw[point.key], exp.train_accuracy_floor)
  learned = {key: s for key, s in summaries.items() if s["learned"]}  # a network that did not fit decides nothing
  if learned:
    verdict = exp.decide(learned)
  else:
    verdict = Verdict("inconclusive", "No point has 2 runs that reached the train-accuracy floor "
                      f"({exp.train_accuracy_floor}): no network fit its data.", {})
  assert verdict.verdict in VERDICTS, verdict
  baselines = shortcut_baselines(points)
  failed = [c["name"] for c in controls if not c["passed"]]
  if failed:
    verdict = Verdict("inconclusive", f"The measure failed its controls ({'; '.join(failed)}), so the runs "
                      f"decide nothing. What the rule said of them: {verdict.verdict}: {verdict.reason}",
                      verdict.effect)
  deciding = {key: learned[key] for key in verdict.rests_on or learned if key in learned}
  unconverged = [key for key, s in deciding.items() if "converged" in s and sum(s["converged"]["values"]) < 2]
  if unconverged and verdict.verdict != "inconclusive":
    verdict = Verdict("inconclusive", f"Fewer than 2 runs converged ({exp.convergence.describe()}) at "
                      f"{', '.join(unconverged)}: train longer. What the rule said of the runs: "
                      f"{verdict.verdict}: {verdict.reason}", verdict.effect)
  figures = exp.figures(summaries, out_dir) if exp.figures else []
  results = {
      "experiment": exp.name, "question": exp.question, "hypothesis": exp.hypothesis,
      "metrics": exp.metrics, "decision_rule": exp.decision_rule, "quick": quick, "seeds": seeds,
      "verdict": dataclasses.asdict(verdict), "controls": controls,
      "train_accuracy_floor": exp.train_accuracy_floor,
      "convergence": exp.convergence.describe() if exp.convergence else None, "points": summaries,
      "shortcut_baselines": baselines, "runs": raw,
      "configs": {p.key: p.config.to_dict() for p in points}, "figures": figures,
      "wall_time_s": time.time() - t0, "finished": time.strftime("%Y-%m-%d %H:%M %Z"), "hardware": hardware(),
      "train_time_s": sum(r["train_time_s"] for runs in raw.values() for r in runs),
      "runs_timed_in_part": sum(r["train_time_from_step"] > 0 for runs in raw.values() for r in runs)}
  (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
  (out_dir / "report.md").write_text(report.render(results))
  print(f"[{exp.name}] verdict: {verdict.verdict}: {verdict.reason}")
  return results
