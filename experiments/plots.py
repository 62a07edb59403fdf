"""Figures shared by the experiments: a metric against a swept parameter, one line per group, with
95% interval error bars across seeds."""

from pathlib import Path

import matplotlib
from etils import epath

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path, dpi: int = 120) -> str:
  """Write `fig` as a PNG to `path`, local or gs:// (through an epath file: matplotlib writes only local files
  by name), close it, and return the file's name for the report."""
  path = epath.Path(path)
  with path.open("wb") as f:
    fig.savefig(f, format="png", dpi=dpi)
  plt.close(fig)
  return path.name


def metric_vs_param(summaries: dict, param: str, metric: str, group: str, path: Path,
                    reference: tuple[float, str] | None = None, chance: float | None = None,
                    level: tuple[float, str] | None = None, log_x: bool = False) -> str:
  """Each group's metric (mean and 95% interval) against the param; `reference` a vertical line, `chance` or
  `level` (value, label) a horizontal one, `log_x` for a param swept by factors."""
  fig, ax = plt.subplots(figsize=(5, 3.5))
  groups = sorted({p["params"][group] for p in summaries.values()})
  for g in groups:
    pts = sorted((p for p in summaries.values() if p["params"][group] == g), key=lambda p: p["params"][param])
    x = [p["params"][param] for p in pts]
    m = [p[metric]["mean"] for p in pts]
    err = [[p[metric]["mean"] - p[metric]["lo"] for p in pts], [p[metric]["hi"] - p[metric]["mean"] for p in pts]]
    ax.errorbar(x, m, yerr=err, marker="o", capsize=3, label=f"{group}={g}")
  if reference:
    ax.axvline(reference[0], color="gray", ls="--", label=reference[1])
  if chance is not None:
    level = (chance, "chance")
  if level is not None:
    ax.axhline(level[0], color="gray", ls=":", label=level[1])
  if log_x:  # ticks at the swept values, written out (1,000 rather than 10^3)
    ax.set_xscale("log")
    swept = sorted({p["params"][param] for p in summaries.values()})
    ax.set_xticks(swept, [f"{v:,}" for v in swept])
    ax.minorticks_off()
  ax.set_xlabel(param.replace("_", " "))
  ax.set_ylabel(metric.replace("_", " "))
  ax.legend(fontsize=8)
  fig.tight_layout()
  return save_figure(fig, path)
