"""`analyze_workdir(workdir)`: every instrument of gap_jax.analysis on a finished run, written into the
workdir as analysis.json and PNG figures. `python -m gap_jax.analysis --workdir <dir>` calls it. The workdir
may be local or gs:// (gap_jax/workdir.py)."""

import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from gap_jax.analysis import figures, localization, map_stats, receptive_field
from gap_jax.analysis.class_maps import check_has_maps, class_maps, maps_fn_of, upsample
from gap_jax.analysis.ground_truth import ground_truth
from gap_jax.data.augment import normalize
from gap_jax.errors import UserError
from gap_jax.trained import load_trained
from gap_jax.workdir import staging_folder, unstage, workdir_path

SPARSITY_TAUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GRID_ROWS = 10


def _clean(x):
  """JSON-safe: numpy scalars to Python, NaN and inf to None."""
  if isinstance(x, dict):
    return {str(k): _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, (float, np.floating)):
    return float(x) if math.isfinite(x) else None
  return x


def _analytic(config, image_size: int, map_size: int) -> tuple[dict, receptive_field.UnitField | None]:
  try:
    fields = receptive_field.receptive_fields(receptive_field.class_map_specs(config), image_size)
  except UserError as e:
    return {"skipped": str(e)}, None
  last = fields[-1]
  out = {"input_size": image_size, "class_map": {"size": last.size, "stride": last.stride,
                                                 "padding": last.padding, "out_size": last.out_size},
         "layers": [{"name": f.name, "size": f.size, "stride": f.stride, "padding": f.padding,
                     "out_size": f.out_size} for f in fields]}
  if last.out_size != map_size:
    out["warning"] = f"layer geometry gives {last.out_size} map units, the model makes {map_size}"
    return out, None
  return out, last


def _erf(trained, field, x_BHWC, labels_B, mass: float) -> tuple[dict, dict]:
  """Effective receptive field of the centre class-map unit, present class, trained and at init."""
  model, config = trained.model, trained.config
  x_like = jnp.zeros((1, *x_BHWC.shape[1:]), jnp.float32)
  maps_fn = maps_fn_of(model)  # one object, so the gradient function compiles once
  maps = jax.eval_shape(maps_fn, trained.state.params, x_like)
  pos = ((maps.shape[1] - 1) // 2, (maps.shape[2] - 1) // 2)
  centre = None if field is None else (float(field.centre(pos[0])), float(field.centre(pos[1])))
  init_key = jax.random.split(jax.random.key(config.seed), 3)[0]  # as train.py derives it
  init_params = jax.jit(model.init)(init_key, x_like)["params"]
  # On the trained parameters' shardings, so the gradient function compiled for one serves both.
  init_params = jax.tree.map(lambda a, like: jax.device_put(a, like.sharding), init_params,
                             trained.state.params)
  out = {"position": list(pos), "mass": mass, "num_inputs": len(x_BHWC),
         "class": "present (true) class of each input", "centre": "analytic centre of the unit"
         if centre else "centre of mass"}
  erfs = {}
  for name, params in (("trained", trained.state.params), ("init", init_params)):
    erf = receptive_field.effective_receptive_field(maps_fn, [params], x_BHWC, pos, labels_B, mass=mass,
                                                    centre=centre)
    out[name] = {"size": erf.size, "centre_of_mass": list(erf.centre_of_mass), "centre": list(erf.centre),
                 "zero_gradient_fraction": erf.zero_gradient_fraction}
    erfs[name] = erf
  return out, erfs


def _localization(config, data, maps_NHWK, labels_N, correct_N, n: int, fig_dir: epath.Path):
  """Scores of the present-class maps of the first n images, and the BoxAcc-vs-threshold figure."""
  gt, source = ground_truth(config, data, "test")
  if gt is None:
    return {"skipped": source}, []
  present = maps_NHWK[np.arange(n), :, :, labels_N[:n]][..., None]
  up = np.asarray(upsample(jnp.asarray(present), data.image_shape[:2]))[..., 0]
  scores = localization.localization_scores(up, gt.boxes_N4[:n], gt.masks_NHW[:n], correct_N=correct_N[:n])
  curves = scores["curves"]
  lines = {"MaxBoxAcc (largest, IoU 0.5)": np.array(curves["box_acc"])}
  lines.update({f"V2 best box, IoU {d}": np.array(c) for d, c in curves["box_acc_v2_by_iou"].items()})
  fig = figures.metric_curves(curves["thresholds"], lines, fig_dir / "box_acc_vs_threshold.png",
                              xlabel="threshold tau on the min-max normalised map", ylabel="BoxAcc (%)",
                              title=f"{config.model} {config.head} {config.head_placement}: {n} images")
  return {"ground_truth": source, "upsampling": "jax.image.resize, bilinear", **scores}, [fig]


def _fraction_above_figure(maps_NHWK, labels_N, path: epath.Path) -> Path:
  """Share of locations above tau * max against tau, present vs absent maps (mean and std over maps)."""
  n, _, _, k = maps_NHWK.shape
  x_NKX = maps_NHWK.transpose(0, 3, 1, 2).reshape(n, k, -1)
  above_NKT = np.stack([(x_NKX > t * x_NKX.max(-1, keepdims=True)).mean(-1) for t in SPARSITY_TAUS], -1)
  present_NK = np.arange(k) == labels_N[:, None]
  return figures.metric_curves(SPARSITY_TAUS, {"present class": above_NKT[present_NK],
                                               "absent classes": above_NKT[~present_NK]},
                               path, xlabel="tau", ylabel="share of locations > tau * max",
                               title=f"class maps of {n} images: mean and std over maps")


def analyze_workdir(workdir, *, step: int | None = None, loc_examples: int = 2000, erf_examples: int = 64,
                    tau: float = 0.5, on: str = "relu", mass: float = 0.95) -> dict:
  """Run every instrument on the split the run evaluates (`data.test`: the test split, or the held-out
  validation split when the run's config says so) and write analysis.json and figures into `workdir`."""
  t0 = time.time()
  workdir = workdir_path(workdir)
  if not workdir.is_dir():
    raise UserError(f"no such workdir {workdir}: pass the --workdir of a training run")
  trained = load_trained(workdir, step)
  figure_dir = staging_folder(workdir)  # matplotlib writes local files only: gs:// gets them at the end
  config, data = trained.config, trained.data
  h, w, k = check_has_maps(trained.model, data.image_shape)
  images, labels = data.test.images, data.test.labels
  logits, maps = class_maps(trained)
  correct = logits.argmax(-1) == labels
  per_class = k == data.num_classes  # else the maps are a map layer's, not one per class
  result = {"workdir": str(workdir), "step": trained.step, "model": config.model, "head": config.head,
            "head_placement": config.head_placement, "final_relu": config.final_relu,
            "dataset": data.name, "split": getattr(data, "eval_split", "test"), "num_examples": len(labels),
            "accuracy": float(correct.mean()), "class_maps": {"shape": [h, w, k], "per_class": per_class}}

  stats = map_stats.map_stats(maps, tau, on)
  result["map_stats"] = {"on": on, "tau": tau, "definitions": "gap_jax/analysis/map_stats.py"}
  if per_class:
    result["map_stats"].update(map_stats.summarize(stats, labels))
  else:
    result["map_stats"]["all_maps"] = {n: map_stats.describe(v.ravel()) for n, v in stats.items()}

  result["receptive_field"], field = _analytic(config, data.image_shape[0], h)
  n_erf = min(erf_examples, len(labels))
  x = normalize(jnp.asarray(images[:n_erf]), data.mean, data.std)
  erf_labels = labels[:n_erf] if per_class else np.zeros(n_erf, np.int32)
  result["effective_receptive_field"], erfs = _erf(trained, field, x, erf_labels, mass)

  n_loc = min(loc_examples, len(labels))
  made = []
  if per_class:
    result["localization"], made = _localization(config, data, maps, labels, correct, n_loc, figure_dir)
    made.append(_fraction_above_figure(maps[:n_loc], labels[:n_loc], figure_dir / "fraction_above_tau.png"))
  else:
    result["localization"] = {"skipped": "the maps are not one per class"}

  rows = [int(np.argmax(labels == c)) for c in range(min(data.num_classes, GRID_ROWS)) if (labels == c).any()]
  made.append(figures.class_map_grid(
      images[rows], maps[rows], labels[rows], figure_dir / "class_maps.png", logits_NK=logits[rows],
      title=f"{config.model}, head {config.head}, {config.head_placement}, step {trained.step}"))
  panels = {f"{n} ({e.size} px at {mass:.0%})": e for n, e in erfs.items()}
  made.append(figures.erf_heatmaps(
      {name: e.erf_HW for name, e in panels.items()}, figure_dir / "erf.png",
      analytic=None if field is None else (*erfs["trained"].centre, field.size),
      squares={name: (*e.centre, e.size) for name, e in panels.items()}))
  result["figures"] = [p.name for p in made]
  result["wall_time_s"] = time.time() - t0
  result = _clean(result)
  unstage(figure_dir, workdir)
  (workdir / "analysis.json").write_text(json.dumps(result, indent=2))
  return result
