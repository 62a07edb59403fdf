"""Is padding a confound of the arrangement, counterexample and localization verdicts? (issue 18: "padding is
declared a confound for a verdict whose measure moves by more than 0.05 (paired interval)").

Each experiment's results under zero padding are set beside its results under circular padding: its own
results/<name>[-quick] and the re-runs results/<name>-padding-<p>[-quick] (experiments/padding.py), pooled, a
point under one padding taken from the first of them that has it. A point's two paddings pair only if their
configs differ in the padding alone (so seed s draws the same data, weights and batches under both) and the
measures that depend on the data alone (DATA_ONLY) agree seed by seed; otherwise the comparison refuses.

The verdict's decisive quantities (DECISIVE), at the points its rule reads them, on a 0-1 scale (localization's
percentages / 100); localization's verdict rests on GAP - GMP, so that contrast is the quantity. For each, the
per-seed paired difference d_s = q_circular(s) - q_zeros(s) over the seeds that reached the experiment's
train-accuracy floor under both, and its 95% interval (experiments.stats: Student t below 10 seeds, percentile
bootstrap from 10). The rule, fixed before any comparison:

- confound: the interval lies beyond +-0.05 (lo > 0.05 or hi < -0.05): the runs show a move larger than 0.05;
- not a confound: the interval lies within [-0.05, 0.05]: the runs show no move that large;
- undetermined: the interval reaches past +-0.05 but not wholly beyond it, or fewer than 2 seeds pair.

A verdict is confounded if any of its quantities is a confound, not confounded if every one is not a confound,
else undetermined. The interval decides, not the point estimate: with 3 seeds (the quick setting) a mean
difference of 0.06 is well within the noise of a t interval with 2 degrees of freedom, and one of 0.04 does not
exclude a move of 0.2. Declaring either state on the point estimate would call noise a confound or a real move
none; the interval declares each only when the runs show it, and says "undetermined" when they cannot, as an
experiment's "inconclusive" does. Planted pairs of result sets (a move of PLANTED_MOVE in one quantity at one
point; seed-to-seed noise alone; for the contrast, both heads moved alike) go through the same comparison first.

./launch.sh experiment padding_confound [--quick]  ->  results/padding_confound[-quick]/{confound.json, report.md}
"""

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from etils import epath

import experiments
from experiments import arrangement, counterexample, stats
from experiments.padding import CONFOUND as NAME
from experiments.padding import PADDINGS, out_name as rerun_name, padded_point
from gap_jax.errors import UserError
from gap_jax.train import hardware
from gap_jax.workdir import config_differences, upgraded

ZEROS, CIRCULAR = PADDINGS
THRESHOLD = 0.05
PLANTED_MOVE, PLANTED_NOISE, PLANTED_SEEDS = 0.15, 0.005, 3


@dataclasses.dataclass(frozen=True)
class Quantity:
  metric: str
  reads: Callable[[dict], bool]  # the points (by params) where the verdict's rule reads it
  scale: float = 1.0  # onto 0-1: 0.01 for a percentage
  minus: str | None = None  # a contrast: minus the same metric of the head `minus` at the same other params

  @property
  def label(self) -> str:
    return f"{self.metric} (gap - {self.minus})" if self.minus else self.metric


def _gap(p: dict) -> bool:
  return p["head"] == "gap"


# What each verdict reads (its decide): arrangement, the rotation pair at GAP fields up to the blind field and
# from the layout's extent on (those between are shown, not decided on), and the control at every GAP field;
# counterexample, corners vs edges at GAP 1 px and from SPAN on, uniform vs rest at 1 px; localization,
# GAP - GMP of MaxBoxAccV2 and PxAP at every placement and field.
DECISIVE = {
    "arrangement": (
        Quantity("rotation_pair",
                 lambda p: _gap(p) and not arrangement.BLIND < p["receptive_field"] < arrangement.NEEDED),
        Quantity("control", _gap)),
    "counterexample": (
        Quantity("corners_vs_edges", lambda p: _gap(p) and (p["receptive_field"] == 1 or
                                                            p["receptive_field"] >= counterexample.SPAN)),
        Quantity("uniform_vs_rest", lambda p: _gap(p) and p["receptive_field"] == 1)),
    "gap_vs_gmp_localization": (
        Quantity("max_box_acc_v2", _gap, scale=0.01, minus="gmp"),
        Quantity("pxap", _gap, scale=0.01, minus="gmp")),
}
EXPERIMENTS = tuple(DECISIVE)
# Measures of the data alone: equal seed by seed under either padding when the seeds pair.
DATA_ONLY = {"arrangement": ("pair_shortcut_rotation_pair",),
             "gap_vs_gmp_localization": ("floor_pxap", "floor_whole_image_box_acc_v2")}


def out_name(quick: bool) -> str:
  return NAME + ("-quick" if quick else "")


def outcome(difference: dict | None) -> str:
  """The rule (module docstring) for one paired difference's summary; None: fewer than 2 seeds pair."""
  if difference is None or difference["n"] < 2:
    return "undetermined"
  if difference["lo"] > THRESHOLD or difference["hi"] < -THRESHOLD:
    return "confound"
  if -THRESHOLD <= difference["lo"] and difference["hi"] <= THRESHOLD:
    return "not a confound"
  return "undetermined"


def result_sets(name: str, quick: bool, root: Path) -> list[tuple[str, dict]]:
  """(folder, results.json) of the experiment's own run and its padding re-runs that exist, in that order."""
  folders = [name + ("-quick" if quick else "")] + [rerun_name(name, p, quick) for p in PADDINGS]
  return [(f, json.loads((Path(root) / f / "results.json").read_text()))
          for f in folders if (Path(root) / f / "results.json").exists()]


def identity(params: dict) -> str:
  """A point's params less its padding: what its zeros and circular runs share."""
  return json.dumps({k: v for k, v in params.items() if k != "padding"}, sort_keys=True, default=str)


def padding_of(params: dict, config: dict) -> str:
  """A point's padding: its params' where they name one (counterexample's 1x1 network says "none": it pads
  nothing), else its config's."""
  return params.get("padding", config.get("padding", ZEROS))


def pool(sets: list[tuple[str, dict]]) -> dict[str, dict[str, dict]]:
  """identity -> padding -> the point (params, config, per-seed runs, the floor, its folder and key), each
  from the first set that has it."""
  points = {}
  for folder, results in sets:
    for key, summary in results["points"].items():
      params, config = summary["params"], results["configs"][key]
      points.setdefault(identity(params), {}).setdefault(padding_of(params, config), {
          "folder": folder, "key": key, "params": params, "config": config, "runs": results["runs"][key],
          "floor": results.get("train_accuracy_floor", 0.0)})
  return points


def check_pair(name: str, zeros: dict, circular: dict) -> None:
  """Refuses (UserError) a pair that is not the same runs but for the padding."""
  diffs = [d for d in config_differences(upgraded(zeros["config"]), upgraded(circular["config"]))
           if not d.startswith("padding:")]
  where = f"{name} {zeros['folder']}/{zeros['key']} and {circular['folder']}/{circular['key']}"
  if diffs:
    raise UserError(f"{where} differ in more than the padding ({'; '.join(diffs)}): re-run one with "
                    f"./launch.sh experiment {name} --padding <p> so that the seeds pair")
  for metric in DATA_ONLY.get(name, ()):
    for s, (a, b) in enumerate(zip(zeros["runs"], circular["runs"])):
      if not np.isclose(a[metric], b[metric], rtol=0, atol=1e-6):
        raise UserError(f"{where}: seed {s} measured its data differently ({metric} {a[metric]} vs "
                        f"{b[metric]}): the two did not train on the same data draws")


def seed_values(q: Quantity, point: dict, partner: dict | None) -> dict[int, float]:
  """Seed -> the quantity on the 0-1 scale, for the seeds at or above the floor (the partner's too)."""
  fit = lambda run, floor: run.get("train_accuracy", 1.0) >= floor
  out = {}
  for s, run in enumerate(point["runs"]):
    other = partner["runs"][s] if partner else None
    if fit(run, point["floor"]) and (other is None or fit(other, partner["floor"])):
      out[s] = q.scale * (run[q.metric] - (other[q.metric] if other else 0.0))
  return out


def compare_quantity(name: str, q: Quantity, points: dict, params: dict) -> dict:
  """One row: the quantity at one point under each padding, the paired difference and its outcome."""
  mine = points[identity(params)]
  check_pair(name, mine[ZEROS], mine[CIRCULAR])
  partners = {}
  if q.minus:
    partners = points.get(identity({**params, "head": q.minus}), {})
    if set(PADDINGS) - set(partners):
      raise UserError(f"{name}: {mine[ZEROS]['key']} has no {q.minus} point beside it under both paddings")
    check_pair(name, partners[ZEROS], partners[CIRCULAR])
  sides = {p: seed_values(q, mine[p], partners.get(p)) for p in PADDINGS}
  seeds = sorted(set(sides[ZEROS]) & set(sides[CIRCULAR]))
  row = {"quantity": q.label, "point": mine[ZEROS]["key"],
         "where": {k: v for k, v in params.items() if k != "padding"}, "seeds": seeds,
         "from": {p: mine[p]["folder"] for p in PADDINGS}}
  if len(seeds) < 2:
    return {**row, "zeros": None, "circular": None, "difference": None, "outcome": outcome(None)}
  zeros, circular = (stats.summarize([sides[p][s] for s in seeds]) for p in PADDINGS)
  difference = stats.paired_difference(circular, zeros)
  return {**row, "zeros": zeros, "circular": circular, "difference": difference, "outcome": outcome(difference)}


def compare(name: str, sets: list[tuple[str, dict]]) -> dict:
  """The experiment's decisive quantities under zeros and circular padding, and the verdict's outcome."""
  points = pool(sets)
  rows, not_compared = [], []
  for q in DECISIVE[name]:
    for by_padding in points.values():
      some = next(iter(by_padding.values()))
      if not q.reads(some["params"]):
        continue
      if set(PADDINGS) <= set(by_padding):
        rows.append(compare_quantity(name, q, points, some["params"]))
      else:
        not_compared.append(f"{q.label} at {some['key']} ({some['folder']}): " +
                            ("pads nothing" if set(by_padding) - set(PADDINGS) else
                             f"only {', '.join(by_padding)} padding was run"))
  found = {r["outcome"] for r in rows}
  verdict = ("not compared" if not rows else "confound" if "confound" in found else
             "not a confound" if found == {"not a confound"} else "undetermined")
  return {"experiment": name, "outcome": verdict, "quantities": rows, "not_compared": not_compared,
          "sets": [set_line(folder, results) for folder, results in sets]}


def set_line(folder: str, results: dict) -> dict:
  """What the report says of one result set: its verdict, paddings, seeds, time and machine."""
  paddings = {padding_of(s["params"], results["configs"][k]) for k, s in results["points"].items()}
  return {"folder": folder, "verdict": results["verdict"]["verdict"], "paddings": sorted(paddings),
          "seeds": results["seeds"], "train_time_s": results.get("train_time_s"),
          "finished": results.get("finished"), "cpu": (results.get("hardware") or {}).get("cpu_model")}


def planted_sets(name: str, move: float, move_every_head: bool = False, seed: int = 0) -> list[tuple[str, dict]]:
  """A zeros and a circular result set made from the experiment's own quick sweep (its params and configs
  under each padding), PLANTED_SEEDS seeds whose values are known by construction: each measure a seed effect
  shared by both paddings plus PLANTED_NOISE of its own (the data-only measures none), and under circular
  padding the first decisive quantity moved by `move` (0-1 scale) at the first point where padding acts and
  the rule reads it; with `move_every_head`, every head's value at that point moves alike."""
  rng = np.random.default_rng(seed)
  q = DECISIVE[name][0]
  points = experiments.get(name).sweep(True)
  acts = lambda p: padded_point(p, ZEROS).config.padding != padded_point(p, CIRCULAR).config.padding
  target = next(p.params for p in points if q.reads(p.params) and acts(p))
  moved = lambda params: (identity({**params, "head": target["head"]}) if move_every_head
                          else identity(params)) == identity(target)
  unit = {**{m: 1.0 for m in DATA_ONLY.get(name, ())}, **{m.metric: m.scale for m in DECISIVE[name]}}
  base = {(p.key, m, s): rng.uniform(0.6, 0.9) for p in points for m in unit for s in range(PLANTED_SEEDS)}
  sets = []
  for padding in PADDINGS:
    padded = [padded_point(p, padding) for p in points]
    runs = {}
    for p, original in zip(padded, points):
      runs[p.key] = []
      for s in range(PLANTED_SEEDS):
        run = {"train_accuracy": 1.0}
        for m in unit:
          noise = 0.0 if m in DATA_ONLY.get(name, ()) else PLANTED_NOISE * rng.standard_normal()
          shift = move if padding == CIRCULAR and m == q.metric and moved(p.params) else 0.0
          run[m] = (base[original.key, m, s] + noise + shift) / unit[m]  # in the measure's own unit
        runs[p.key].append(run)
    sets.append((f"planted-{padding}", {
        "points": {p.key: {"params": p.params} for p in padded}, "runs": runs,
        "configs": {p.key: p.config.to_dict() for p in padded}, "verdict": {"verdict": "planted"},
        "seeds": PLANTED_SEEDS, "train_accuracy_floor": 0.0}))
  return sets


def controls() -> list[dict]:
  """Each planted pair through compare: its outcome, and whether it is the expected one."""
  checked = []
  for name in EXPERIMENTS:
    planted = [(f"a move of {PLANTED_MOVE} in {DECISIVE[name][0].label} at one point", "confound",
                planted_sets(name, PLANTED_MOVE)),
               (f"seed-to-seed noise of {PLANTED_NOISE} alone", "not a confound", planted_sets(name, 0.0))]
    if DECISIVE[name][0].minus:
      planted.append((f"every head moved by {PLANTED_MOVE} at one point (the contrast stays)", "not a confound",
                      planted_sets(name, PLANTED_MOVE, move_every_head=True)))
    for description, expected, sets in planted:
      found = compare(name, sets)["outcome"]
      checked.append({"experiment": name, "name": description, "expected": expected, "outcome": found,
                      "passed": found == expected})
  return checked


RULE = (f"Per decisive quantity and point, the paired difference circular - zeros over the seeds (0-1 scale), with "
        f"its 95% interval (Student t below {stats.BOOTSTRAP_FROM} seeds, percentile bootstrap from "
        f"{stats.BOOTSTRAP_FROM}): a confound if the interval lies beyond +-{THRESHOLD}, not a confound if it lies "
        f"within [-{THRESHOLD}, {THRESHOLD}], otherwise (or with fewer than 2 paired seeds) undetermined. A verdict "
        "is confounded by padding if any of its quantities is a confound, not confounded if every one is not a "
        "confound, otherwise undetermined. Pairs whose configs differ in more than the padding, or whose data "
        "differ, are refused.")


def where_text(where: dict) -> str:
  return ", ".join(f"{k} {v}" for k, v in where.items())


def cell(summary: dict | None) -> str:
  return stats.fmt(summary, digits=3) if summary else "-"


def render(results: dict) -> str:
  lines = [f"# Is padding a confound of the verdicts?{' (quick)' if results['quick'] else ''}", "",
           "Issue 18: padding is declared a confound for a verdict whose measure moves by more than "
           f"{THRESHOLD} (paired interval). Each verdict's decisive quantities under zero and circular padding, "
           "seed by seed (same data, initial weights and batches).", "",
           f"**Rule (fixed before the comparison).** {RULE}", "", "## Controls", "",
           "Planted pairs of result sets, made from each experiment's own quick sweep, through the same comparison:",
           "", "| experiment | planted | expected | outcome | |", "|---|---|---|---|---|"]
  lines += [f"| {c['experiment']} | {c['name']} | {c['expected']} | {c['outcome']} | "
            f"{'passed' if c['passed'] else '**failed**'} |" for c in results["controls"]]
  lines += ["", "## Outcomes", "", "| experiment | padding | verdicts of the result sets |", "|---|---|---|"]
  lines += [f"| `{c['experiment']}` | **{c['outcome']}** | " + "; ".join(
      f"{s['folder']} ({', '.join(s['paddings'])}): {s['verdict']}" for s in c["sets"]) + " |"
      for c in results["comparisons"]]
  for c in results["comparisons"]:
    lines += ["", f"## {c['experiment']}: {c['outcome']}", ""]
    if c["quantities"]:
      lines += ["| quantity | where | zeros | circular | circular - zeros | seeds | outcome |",
                "|---|---|---|---|---|---|---|"]
      lines += [f"| {r['quantity']} | {where_text(r['where'])} | {cell(r['zeros'])} | {cell(r['circular'])} | "
                f"{cell(r['difference'])} | {len(r['seeds'])} | {r['outcome']} |" for r in c["quantities"]]
    if c["not_compared"]:
      lines += ["", "Not compared: " + "; ".join(c["not_compared"]) + "."]
    lines += ["", "Result sets: " + "; ".join(
        f"`results/{s['folder']}` ({', '.join(s['paddings'])} padding; {s['seeds']} seeds; verdict {s['verdict']}; "
        f"{(s['train_time_s'] or 0) / 60:.1f} min of training, finished {s['finished']}, on {s['cpu']})"
        for s in c["sets"]) + "."]
  if results["figures"]:
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in results["figures"]]
  lines += ["", f"Compared {results['finished']} in {results['wall_time_s']:.1f} s on "
            f"{results['hardware']['cpu_model']} (reads results.json files, trains nothing); the runs' training "
            "times and machines are those of the result sets above."]
  return "\n".join(lines) + "\n"


def figure(comparisons: list[dict], path: Path) -> str | None:
  """Each paired difference with its interval, against the +-THRESHOLD band."""
  rows = [(f"{c['experiment']}: {r['quantity']} at {r['point']}", r["difference"])
          for c in comparisons for r in c["quantities"] if r["difference"]]
  if not rows:
    return None
  from experiments.plots import plt, save_figure  # plots sets the Agg backend
  fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1.2))
  for i, (_, d) in enumerate(rows):
    ax.errorbar(d["mean"], i, xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=3, color="C0")
  ax.axvspan(-THRESHOLD, THRESHOLD, color="gray", alpha=0.2, label=f"within ±{THRESHOLD}")
  ax.axvline(0, color="gray", lw=0.8)
  ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("circular - zeros, paired by seed (95% interval)")
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  return save_figure(fig, path)


def main(out_dir: Path, quick: bool, root: Path = Path("results")) -> dict:
  """Compare every experiment that has both paddings under `root`; write confound.json, report.md and the
  figure into `out_dir`. Refused (UserError) when no experiment has a run under each padding."""
  t0 = time.time()
  checked = controls()
  for c in checked:
    print(f"[{NAME}] control {c['experiment']}, {c['name']}: {c['outcome']} (expected {c['expected']})", flush=True)
  comparisons = [compare(name, result_sets(name, quick, root)) for name in EXPERIMENTS]
  if all(c["outcome"] == "not compared" for c in comparisons):
    raise UserError(f"no experiment under {root} has runs under both paddings{' (quick)' if quick else ''}: "
                    "first ./launch.sh experiment arrangement --padding zeros, counterexample --padding zeros, "
                    f"gap_vs_gmp_localization --padding circular{' (each with --quick)' if quick else ''}")
  failed = [f"{c['experiment']}: {c['name']}" for c in checked if not c["passed"]]
  for c in comparisons if failed else ():
    c["outcome"] = "undetermined"
    c["not_compared"].append(f"the rule failed its controls ({'; '.join(failed)}), so no outcome is declared")
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  made = figure(comparisons, out_dir / "difference_by_quantity.png")
  results = {"name": NAME, "quick": quick, "rule": RULE, "threshold": THRESHOLD, "controls": checked,
             "comparisons": comparisons, "figures": [made] if made else [],
             "finished": time.strftime("%Y-%m-%d %H:%M %Z"), "wall_time_s": time.time() - t0,
             "hardware": hardware()}
  (out_dir / "confound.json").write_text(json.dumps(results, indent=2, default=str))
  (out_dir / "report.md").write_text(render(results))
  for c in comparisons:
    print(f"[{NAME}] {c['experiment']}: {c['outcome']}", flush=True)
  return results
