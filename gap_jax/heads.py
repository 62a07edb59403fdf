"""Global pooling heads, chosen by name.

A head turns a spatial map x (B, H, W, C) into one vector per image (B, D). Heads that pool each channel
on its own (D == C) set `per_channel = True`: in the classify-then-pool placement their output is the
logits; any other head is followed by a dense layer. To add a head: write a module with
`__call__(self, x_BHWC, train: bool)` and put it in `HEADS`. Its dataclass fields are its
hyper-parameters; `config.head_args.<field>` sets them.
"""

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import flax.linen as nn

from gap_jax.errors import UserError


class GlobalAvgPool(nn.Module):
  """gap: the mean of each channel over all H*W locations (NiN, CAM)."""

  per_channel: ClassVar[bool] = True

  def __call__(self, x_BHWC, train: bool = False):
    return x_BHWC.mean(axis=(1, 2))


class GlobalMaxPool(nn.Module):
  """gmp: the maximum of each channel over all H*W locations."""

  per_channel: ClassVar[bool] = True

  def __call__(self, x_BHWC, train: bool = False):
    return x_BHWC.max(axis=(1, 2))


class Flatten(nn.Module):
  """fc: flatten H*W*C (dropout first when `dropout` > 0); the placement's dense layer follows."""

  dropout: float = 0.0
  per_channel: ClassVar[bool] = False

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    x_BD = x_BHWC.reshape(x_BHWC.shape[0], -1)
    return nn.Dropout(self.dropout, deterministic=not train)(x_BD)


HEADS: dict[str, type[nn.Module]] = {
    "gap": GlobalAvgPool,
    "gmp": GlobalMaxPool,
    "fc": Flatten,
}


def make_head(head: str, head_args: Mapping[str, object], **module_kwargs) -> nn.Module:
  """The head called `head`, given those of `head_args` that are its own fields."""
  if head not in HEADS:
    raise UserError(f"unknown head {head!r}: choose one of {sorted(HEADS)} (config field `head`)")
  cls = HEADS[head]
  own = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  return cls(**{k: v for k, v in head_args.items() if k in own}, **module_kwargs)
