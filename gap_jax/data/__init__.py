"""Datasets by name, loaded into host memory; the training loop puts them on device (or streams the training
set from its files: gap_jax/data/stream.py).

load_dataset(config) reads the splits from the dataset's source, holds out a validation split when
`config.eval_split == "validation"`, then preprocesses (gap_jax.data.preprocess). To add a dataset, add a
DatasetSpec to gap_jax.data.specs.SPECS: a tfds builder name, or a local `load(config) -> (train, test,
num_classes)`.
"""

import os
from pathlib import Path

from gap_jax.data import preprocess, tfds_source
from gap_jax.data.specs import SPECS, DatasetSpec
from gap_jax.data.types import Dataset, Split
from gap_jax.data.validation import concat, hold_out
from gap_jax.errors import UserError

DATASETS = SPECS
SOURCES = ("auto", "local", "tfds")
EVAL_SPLITS = ("test", "validation")


def _field(config, name: str, default):
  """A config field, or its default for runs whose config.json predates it."""
  return config.get(name, default)


def choose_source(name: str, spec: DatasetSpec, config) -> str:
  wanted = _field(config, "data_source", "auto")
  if wanted not in SOURCES:
    raise UserError(f"unknown data_source {wanted!r}: choose one of {list(SOURCES)}")
  if wanted == "auto":
    return spec.sources[0]
  if wanted not in spec.sources:
    raise UserError(f"dataset {name!r} has no {wanted!r} source, only {list(spec.sources)}: set "
                    "--config.data_source to one of those or to 'auto'")
  return wanted


def read_splits(name: str, spec: DatasetSpec, source: str, config,
                wanted: list[str]) -> tuple[dict[str, Split], int]:
  if source == "local":
    train, test, num_classes = spec.local(config)
    return {"train": train, "test": test}, num_classes
  splits = tfds_source.load(spec.tfds_name, wanted, _field(config, "tfds_data_dir", None))
  for split_name, split in splits.items():
    check_prepared(name, spec, split_name, split.image_shape, split.labels)
  return splits, spec.num_classes


def check_prepared(name: str, spec: DatasetSpec, split_name: str, shape, labels) -> None:
  """Refuse prepared tfds data whose images or labels are not the dataset's."""
  top = int(labels.max())
  if shape != spec.image_shape or top >= spec.num_classes or labels.min() < 0:
    raise UserError(f"the prepared {name} {split_name} split has images {shape} and labels up to {top}, "
                    f"expected {spec.image_shape} and below {spec.num_classes}: delete it from the "
                    f"tfds data dir and run `{tfds_source.prepare_command(name, None)}`")


def validation_recipe(name: str, spec: DatasetSpec, config, parts: list[str]) -> dict[str, int]:
  """Examples per class to hold out of each training part."""
  per_class = _field(config, "validation_per_class", None)
  if per_class is not None:
    if per_class <= 0:
      raise UserError(f"validation_per_class={per_class} must be positive, or None for the recipe")
    return {"train": per_class}
  if spec.validation is None:
    raise UserError(f"dataset {name!r} has no validation recipe: set --config.validation_per_class")
  return {part: n for part, n in spec.validation.items() if part in parts}


def cache_dir(config) -> Path:
  folder = _field(config, "preprocess_cache_dir", None)
  if folder:
    return Path(folder)
  return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gap_jax"


def plan(config) -> tuple[str, DatasetSpec, str, str, list[str], str]:
  """(name, spec, source, eval_split, training parts, preprocess method) of the config's dataset, each
  checked before anything is read."""
  name = config.dataset
  if name not in DATASETS:
    raise UserError(f"unknown dataset {name!r}: choose one of {sorted(DATASETS)} "
                    "(config field `dataset`)")
  spec = DATASETS[name]
  source = choose_source(name, spec, config)
  eval_split = _field(config, "eval_split", "test")
  if eval_split not in EVAL_SPLITS:
    raise UserError(f"unknown eval_split {eval_split!r}: choose one of {list(EVAL_SPLITS)}")
  parts = ["train"]
  if _field(config, "train_extra", False):
    if spec.extra_split is None or source != "tfds":
      raise UserError(f"train_extra=True, but dataset {name!r} from source {source!r} has no extra "
                      "training split (svhn_cropped through tfds has): set --config.train_extra=False")
    parts.append(spec.extra_split)
  method = _field(config, "preprocess", "auto")
  method = spec.preprocess if method == "auto" else method
  if method not in preprocess.PREPROCESSORS:
    raise UserError(f"unknown preprocess {method!r}: choose one of {sorted(preprocess.PREPROCESSORS)} "
                    "or 'auto' (the dataset's default)")
  return name, spec, source, eval_split, parts, method


def split_off(name: str, spec: DatasetSpec, config, eval_split: str, parts: list[str], splits: dict[str, Split],
              num_classes: int) -> tuple[Split, Split, str]:
  """(training set, evaluated split, what the preprocessing is fitted on: the name of the training set). With
  eval_split "validation", each training part's recipe share (validation_recipe) is held out (hold_out), the rest
  kept, each in its order; else the parts are the training set and the test split is evaluated. The streamed
  route splits off Splits whose "images" are the stored records' numbers, and gets the numbers of the same
  examples."""
  if eval_split == "test":
    return concat([splits[p] for p in parts]), splits["test"], "+".join(parts)
  recipe = validation_recipe(name, spec, config, parts)
  kept, held = [], []
  for part in parts:
    if recipe.get(part):
      rest, part_held = hold_out(splits[part], recipe[part], num_classes, f"{name} {part}")
      kept.append(rest)
      held.append(part_held)
    else:
      kept.append(splits[part])
  fitted_on = "+".join(parts) + "-minus-validation-" + "+".join(str(recipe.get(p, 0)) for p in parts)
  return concat(kept), concat(held), fitted_on


def load_dataset(config) -> Dataset:
  name, spec, source, eval_split, parts, method = plan(config)
  needed = (parts + ["test"]) if eval_split == "test" else parts  # validation never reads test
  splits, num_classes = read_splits(name, spec, source, config, needed)
  train, evaluated, fitted_on = split_off(name, spec, config, eval_split, parts, splits, num_classes)
  cache_file = cache_dir(config) / f"zca-{name}-{source}-{fitted_on}.npz"
  train_x, eval_x, mean, std = preprocess.PREPROCESSORS[method](train.images, evaluated.images, cache_file)
  return Dataset(name, Split(train_x, train.labels), Split(eval_x, evaluated.labels), num_classes,
                 mean=mean, std=std, eval_split=eval_split, preprocess=method)


__all__ = ["DATASETS", "Dataset", "Split", "load_dataset"]
