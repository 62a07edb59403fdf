"""Hold a validation split out of the training data, so hyper-parameters are tuned without the test
split (the paper tuned CIFAR-10 on a 40k/10k split of its training set)."""

import numpy as np

from gap_jax.data.types import Split
from gap_jax.errors import UserError

SEED = 0  # fixed: every run, whatever its own seed, holds out the same examples


def hold_out(split: Split, per_class: int, num_classes: int, what: str) -> tuple[Split, Split]:
  """(rest, held): `per_class` examples of every class drawn at random, each part in its original order."""
  rng = np.random.default_rng(SEED)
  held = np.zeros(len(split), bool)
  for c in range(num_classes):
    members = np.flatnonzero(split.labels == c)
    if len(members) < per_class:
      raise UserError(f"cannot hold out {per_class} examples of class {c} from {what}: it has "
                      f"{len(members)}; lower --config.validation_per_class")
    held[rng.choice(members, per_class, replace=False)] = True
  if held.all():
    raise UserError(f"holding out {per_class} per class leaves no training examples in {what}: "
                    "lower --config.validation_per_class")
  return (Split(split.images[~held], split.labels[~held]),
          Split(split.images[held], split.labels[held]))


def concat(splits: list[Split]) -> Split:
  if len(splits) == 1:
    return splits[0]
  return Split(np.concatenate([s.images for s in splits]), np.concatenate([s.labels for s in splits]))
