"""A workdir belongs to one config. Starting a run in a workdir that holds a different config refuses,
naming the fields that differ, unless the user asks for an override (keep the checkpoints, record the new
config) or a fresh start (move the old run into `previous/<time>/`; nothing is deleted). The new config is
recorded (`record_config`) only once the run's checkpoints are known to fit it, so a refused override leaves
the workdir's config.json describing its checkpoints.

A workdir is a local folder or a Cloud Storage folder (gs://bucket/...): every path the run reads or writes is an
`etils.epath.Path`, which reaches gs:// through gcsfs (or TensorFlow's gfile where TensorFlow is installed), and
orbax writes checkpoints there through tensorstore's gcs driver (`workdir_path` checks what it needs)."""

import contextlib
import importlib.util
import json
import tempfile
import time

from etils import epath

from gap_jax.configs import default
from gap_jax.errors import UserError

ON_CONFIG_CHANGE = ("refuse", "override", "fresh")
RUN_FILES = ("config.json", "metrics.jsonl", "results.json", "tensorboard", "checkpoints",
             "corrupt_checkpoints")
# The remote schemes a workdir may have, with the modules each needs: epath reads and writes gs:// through gcsfs
# (or TensorFlow's gfile, which it prefers where TensorFlow is installed), and orbax deletes old checkpoints there
# with google-cloud-storage. Orbax writes checkpoints to no other remote scheme (s3:// is taken for a relative
# local path), so no other is accepted.
REMOTE_SCHEMES = {"gs": (("gcsfs", "tensorflow"), ("google.cloud.storage",))}
GCS_INSTALL = "pip install -e '.[gcs]'"


def _installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # a parent package (google.cloud) is missing
    return False


def workdir_path(workdir, flag: str = "--workdir") -> epath.Path:
  """`workdir` as an epath.Path: a local folder, or gs://bucket/... where its backend is installed. Any other
  scheme (s3://, file://), or gs:// without gcsfs, is one UserError (naming `flag`) before anything is written."""
  text = str(workdir)
  scheme, sep, rest = text.partition("://")
  if sep:
    if scheme not in REMOTE_SCHEMES:
      raise UserError(f"{flag} {text}: a workdir is a local folder or gs://<bucket>/<folder>; {scheme}:// is "
                      "not supported (orbax writes checkpoints only to local folders and gs://)")
    if not rest.split("/")[0]:
      raise UserError(f"{flag} {text} names no bucket: use gs://<bucket>/<folder>")
    for alternatives in REMOTE_SCHEMES[scheme]:
      if not any(_installed(m) for m in alternatives):
        raise UserError(f"{flag} {text}: {scheme}:// needs {' or '.join(alternatives)}, which is not "
                        f"installed: {GCS_INSTALL}")
  return epath.Path(workdir)


def is_remote(path: epath.Path) -> bool:
  """Whether `path` is in object storage (gs://), where files cannot be appended to and a folder exists only
  while something is in it. (A local path never holds "://": pathlib folds the double slash.)"""
  return "://" in str(path)


def make_folder(folder: epath.Path) -> None:
  """`folder`, made so that something can be moved into it. epath moves a file or folder only into a folder
  that exists, and in object storage a folder exists only while an object is under it: there an empty marker
  object makes it."""
  folder.mkdir(parents=True, exist_ok=True)
  if is_remote(folder) and not folder.exists():
    (folder / ".keep").write_text("")


def staging_folder(workdir: epath.Path) -> epath.Path:
  """Where to write files that are written piece by piece (metrics.jsonl, event files, figures): the workdir
  itself when it is local; for object storage, which cannot append, a local temporary folder whose files
  `upload` copies into the workdir whole."""
  return epath.Path(tempfile.mkdtemp(prefix="gap_jax_staging_")) if is_remote(workdir) else workdir


def upload(staging: epath.Path, target: epath.Path) -> None:
  """Copy every file under the local folder `staging` to the same place under `target`, each whole."""
  for folder, _, files in staging.walk():
    for name in files:
      source = folder / name
      (target / source.relative_to(staging)).write_bytes(source.read_bytes())


def unstage(staging: epath.Path, workdir: epath.Path) -> None:
  """Done with what `staging_folder(workdir)` gave: for object storage, its files uploaded and the local folder
  removed; a local workdir was its own staging folder, so nothing to do."""
  if staging != workdir:
    upload(staging, workdir)
    staging.rmtree()


def upgraded(stored: dict) -> dict:
  """A config read from a config.json, in today's form. Workdirs written before the per-module sections hold a
  flat head_args (every head's fields in one dict, each head taking its own) and a flat model_args (the chosen
  model's fields): their values move into the chosen head's and model's sections, and every other section gets
  its defaults (its values did nothing then). A field added since gets its default, which by the rule of
  gap_jax/configs/default.py is what runs did before the field existed."""
  sections = json.loads(default.get_config().to_json_best_effort())  # as stored: tuples as lists
  out = _with_defaults(stored, sections)
  for kind, chosen in (("head_args", stored.get("head")), ("model_args", stored.get("model"))):
    old = stored.get(kind) or {}
    if old and all(isinstance(v, dict) for v in old.values()):
      continue  # already one section per module
    out[kind] = sections[kind]
    if chosen in out[kind]:
      out[kind][chosen] = {**out[kind][chosen], **{k: v for k, v in old.items() if k in out[kind][chosen]}}
  return out


def _with_defaults(stored: dict, defaults: dict) -> dict:
  """`stored`, with every field it lacks taken from `defaults`, at every depth."""
  out = dict(stored)
  for k, v in defaults.items():
    if k not in out:
      out[k] = v
    elif isinstance(v, dict) and isinstance(out[k], dict):
      out[k] = _with_defaults(out[k], v)
  return out


def flatten(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


# Fields that change how fast a run computes or how it reports progress, not what it computes: a workdir's
# run may go on under another value (or without the field, from before it existed). data_route: both routes
# give the same batches (bit for bit, or to float32 rounding under gcn_zca: tests/test_data_routes.py), so a run
# may move from memory to streaming and back.
SPEED_ONLY_FIELDS = ("cpu_kernels", "progress_every_s", "profile_steps", "data_route")


def unused_data_sections(config: dict) -> set[str]:
  """The config sections of datasets the run does not train on (e.g. `arrangement.*` in a run on `shapes`):
  nothing the run computes depends on them."""
  from gap_jax.data.specs import SPECS
  return {name for name in SPECS if name != config.get("dataset") and isinstance(config.get(name), dict)}


def config_differences(old: dict, new: dict) -> list[str]:
  unused = unused_data_sections(old) & unused_data_sections(new)
  a, b = (flatten({k: v for k, v in c.items() if k not in unused}) for c in (old, new))
  return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}"
          for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and k not in SPEED_ONLY_FIELDS]


def stored_config_differences(workdir: epath.Path, config) -> list[str] | None:
  """How `config` differs from the config stored in `workdir`; None when the workdir holds none."""
  config_file = workdir / "config.json"
  if not config_file.exists():
    return None
  stored = upgraded(json.loads(config_file.read_text()))
  return config_differences(stored, json.loads(config.to_json_best_effort()))


def prepare_workdir(workdir: epath.Path, config, on_config_change: str = "refuse") -> None:
  if on_config_change not in ON_CONFIG_CHANGE:
    raise UserError(f"on_config_change={on_config_change!r}: choose one of {ON_CONFIG_CHANGE}")
  with _writes_explained(workdir):
    workdir.mkdir(parents=True, exist_ok=True)
    diffs = stored_config_differences(workdir, config)
    if diffs is not None:
      if diffs and on_config_change == "refuse":
        raise UserError(
            f"{workdir} holds a run with a different config ({'; '.join(diffs)}): use another "
            "--workdir, or pass --fresh_start (keeps the old run in previous/) or "
            "--allow_config_change (continues from its checkpoints)")
      if diffs and on_config_change == "fresh":
        archive = workdir / "previous" / time.strftime("%Y%m%d-%H%M%S")
        make_folder(archive)
        for name in RUN_FILES:
          if (workdir / name).exists():
            (workdir / name).rename(archive / name)
    probe = workdir / ".write_test"
    probe.write_text("ok")
    probe.unlink()


def record_config(workdir: epath.Path, config) -> None:
  with _writes_explained(workdir):
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


@contextlib.contextmanager
def _writes_explained(workdir: epath.Path):
  try:
    yield
  except OSError as e:
    raise UserError(f"cannot write to workdir {workdir} ({e.strerror or e}): choose a writable --workdir") from None
