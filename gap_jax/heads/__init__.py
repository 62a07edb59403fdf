"""Global pooling heads, chosen by name (config field `head`).

A head turns a spatial map x (B, H, W, C) into one vector per image (B, D). Heads that pool each channel
on its own (D == C) set `per_channel = True`: in the classify-then-pool placement their output is the
logits; any other head is followed by a dense layer (gap_jax/models/output.py). A head that cannot pool
class maps says why in `only_pool_then_classify`, and the model refuses that placement when it is built.

simple.py: a fixed formula per channel (gap, gmp, lse, gem, topk, gwrp, avgmax, catavgmax) and fc.
attention.py: learned attention over the locations (map, attention_mil).

To add a head: write a module with `__call__(self, x_BHWC, train: bool)` and put it in `HEADS`. Its
dataclass fields, each with a default, are its hyper-parameters: the config gets a section
`head_args.<head>` of them (gap_jax/configs/sections.py), so `--config.head_args.<head>.<field>=...` sets one.
"""

from collections.abc import Mapping

import flax.linen as nn

from gap_jax.configs import sections
from gap_jax.errors import UserError
from gap_jax.heads.attention import GatedAttentionMIL, MultiheadAttentionPool
from gap_jax.heads.simple import (AvgMaxPool, CatAvgMaxPool, Flatten, GeneralizedMeanPool, GlobalAvgPool,
                                  GlobalMaxPool, GlobalWeightedRankPool, LogSumExpPool, WildcatPool)

HEADS: dict[str, type[nn.Module]] = {
    "gap": GlobalAvgPool,
    "gmp": GlobalMaxPool,
    "lse": LogSumExpPool,
    "gem": GeneralizedMeanPool,
    "topk": WildcatPool,
    "gwrp": GlobalWeightedRankPool,
    "avgmax": AvgMaxPool,
    "catavgmax": CatAvgMaxPool,
    "map": MultiheadAttentionPool,
    "attention_mil": GatedAttentionMIL,
    "fc": Flatten,
}


def head_class(head: str) -> type[nn.Module]:
  if head not in HEADS:
    raise UserError(f"unknown head {head!r}: choose one of {sorted(HEADS)} (config field `head`)")
  return HEADS[head]


def head_arg_sections():
  """config.head_args: one section per head that has hyper-parameters, with the head's defaults."""
  return sections.sections(HEADS)


def chosen_head_args(config) -> dict:
  """The chosen head's section of `config.head_args`; a value set in another head's section is refused."""
  head_class(config.head)
  return sections.chosen_args(config, "head_args", "head", HEADS)


def heads_taking(field: str) -> list[str]:
  return sections.owners(field, HEADS)


def make_head(head: str, head_args: Mapping[str, object], **module_kwargs) -> nn.Module:
  """The head called `head`, with `head_args` (its own fields only)."""
  cls = head_class(head)
  sections.refuse_unknown("head_args", "head", head, head_args, cls)
  return cls(**head_args, **module_kwargs)
