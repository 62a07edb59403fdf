"""The two placements of a pooling head, shared by every model.

- classify_then_pool (NiN): a map layer (by default a 1x1 convolution) makes one map per class, the head
  pools each map to a logit. `aux["class_maps"]` is that map.
- pool_then_classify (CAM, ResNet): the head pools the features, a dense layer makes the logits.
  `aux["class_maps"]` is the class activation map M_c = sum_k W[k, c] f_k + b_c, whose spatial mean is the
  logit when the head is gap (Zhou et al. 2016). It exists only for heads that pool channel by channel
  (`per_channel`); for those other than gap it is the same linear evidence map, but pooling it with the
  head does not give the logit.

A head that cannot pool class maps (catavgmax, map, attention_mil: see `only_pool_then_classify` in
gap_jax/heads) is refused in classify_then_pool when the module is built, with a UserError.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from gap_jax.errors import UserError
from gap_jax.heads import head_class, make_head
from gap_jax.models.layers import Conv

CLASSIFY_THEN_POOL = "classify_then_pool"
POOL_THEN_CLASSIFY = "pool_then_classify"
PLACEMENTS = (CLASSIFY_THEN_POOL, POOL_THEN_CLASSIFY)


KERNEL_INITS = {
    "normal": nn.initializers.normal,  # the paper's Gaussian(0, init_std) for every layer
    "lecun_normal": lambda _: nn.initializers.lecun_normal(),  # Flax's default
    "he_normal": lambda _: nn.initializers.he_normal(),
}


def kernel_initializer(kernel_init: str, init_std: float):
  if kernel_init not in KERNEL_INITS:
    raise UserError(f"unknown kernel_init {kernel_init!r}: choose one of {sorted(KERNEL_INITS)}")
  return KERNEL_INITS[kernel_init](init_std)


def conv1x1_maps(features: int, kernel_init, dtype) -> nn.Module:
  return Conv(features, 1, kernel_init=kernel_init, dtype=dtype, name="class_maps")


class PooledOutput(nn.Module):
  """features (B, H, W, C) -> (logits (B, K), aux)."""

  num_classes: int
  head: str = "gap"
  placement: str = CLASSIFY_THEN_POOL
  head_args: Any = None  # the head's own hyper-parameters (its section of config.head_args)
  final_relu: bool = True  # the paper's ReLU after the class-map layer
  num_maps: int | None = None  # maps made by the map layer; default num_classes
  make_map_layer: Callable[..., nn.Module] = conv1x1_maps
  kernel_init: Any = nn.initializers.lecun_normal()
  dtype: Any = None

  def __post_init__(self):
    super().__post_init__()
    if self.placement not in PLACEMENTS:
      raise UserError(f"unknown head_placement {self.placement!r}: choose one of {list(PLACEMENTS)}")
    why_not = getattr(head_class(self.head), "only_pool_then_classify", "")
    if self.placement == CLASSIFY_THEN_POOL and why_not:
      raise UserError(f"head {self.head!r} cannot be placed {CLASSIFY_THEN_POOL}: {why_not}; "
                      f"use --config.head_placement={POOL_THEN_CLASSIFY}")

  @nn.compact
  def __call__(self, features_BHWC, train: bool = False):
    aux = {"features": features_BHWC}
    head = make_head(self.head, self.head_args or {}, name="head")
    k = self.num_classes
    if self.placement == CLASSIFY_THEN_POOL:
      maps_BHWM = self.make_map_layer(self.num_maps or k, self.kernel_init, self.dtype)(features_BHWC)
      if self.final_relu:
        maps_BHWM = nn.relu(maps_BHWM)
      aux["class_maps"] = maps_BHWM
      pooled = head(maps_BHWM, train)
      if head.per_channel and maps_BHWM.shape[-1] == k:
        return pooled, aux
      return self._dense(pooled), aux
    dense = nn.Dense(k, kernel_init=self.kernel_init, dtype=self.dtype, name="classifier")
    logits = dense(head(features_BHWC, train))
    if head.per_channel:
      w, b = dense.variables["params"]["kernel"], dense.variables["params"]["bias"]
      aux["class_maps"] = jnp.einsum("bhwc,ck->bhwk", features_BHWC, w.astype(features_BHWC.dtype)) + b
    return logits, aux

  def _dense(self, x):
    return nn.Dense(self.num_classes, kernel_init=self.kernel_init, dtype=self.dtype, name="classifier")(x)


class PooledClassifier(nn.Module):
  """The fields every model shares (what build_model passes from the config). A model subclasses it,
  computes its features in `__call__` and returns `self.pooled_output(features, train)`."""

  num_classes: int
  head: str = "gap"
  head_placement: str = CLASSIFY_THEN_POOL
  head_args: Any = None
  dropout: float = 0.5
  final_relu: bool = True  # the paper's ReLU after the class-map layer
  kernel_init: str = "lecun_normal"  # KERNEL_INITS
  init_std: float = 0.05  # for kernel_init "normal"
  dtype: Any = None  # compute dtype; parameters stay float32
  padding: str = "zeros"  # layers.PADDINGS: what the convolutions see beyond the border

  @property
  def kernel_init_fn(self):
    return kernel_initializer(self.kernel_init, self.init_std)

  def pooled_output(self, features_BHWC, train: bool, **output_fields):
    return PooledOutput(self.num_classes, self.head, self.head_placement, self.head_args, self.final_relu,
                        kernel_init=self.kernel_init_fn, dtype=self.dtype, name="output", **output_fields)(
                            features_BHWC, train)
