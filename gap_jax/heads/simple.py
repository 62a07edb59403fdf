"""Heads that pool each channel by a fixed formula over its H*W values (at most one learned scalar),
and `fc`, which flattens instead of pooling.

Each formula is the one in the README's "Heads" table; tests/test_heads.py checks it against numpy and
against its limits (gem p = 1, lse r -> 0 and r -> inf, topk k = N, gwrp decay 0 and 1).
"""

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.errors import UserError


def check_arg(ok: bool, field: str, value, rule: str) -> None:
  """Refuse a bad head hyper-parameter when the head is built (before any compute)."""
  if not ok:
    from gap_jax.heads import heads_taking  # the registry imports this module
    path = f"head_args.{'|'.join(heads_taking(field))}.{field}"
    raise UserError(f"{path}={value!r} {rule} (set --config.{path}=...)")


def _tokens(x_BHWC):
  """(B, H*W, C): the order of locations does not matter to any head but fc."""
  return x_BHWC.reshape(x_BHWC.shape[0], -1, x_BHWC.shape[-1])


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


class LogSumExpPool(nn.Module):
  """lse: (1/r) log mean exp(r x), the mean as r -> 0 and the max as r -> inf (timm's LsePlus2d).

  Computed as m + log1p(mean(expm1(r (x - m)))) / r with m the max: exp never overflows for large r,
  and for small r the log of a number near 1 keeps its precision. m carries no gradient (the value
  does not depend on m). `learn_r` makes r a parameter (raw, as timm), initialised to `r`.
  """

  r: float = 10.0
  learn_r: bool = False
  per_channel: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    check_arg(self.r > 0, "r", self.r, "must be positive")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    r = self.param("r", nn.initializers.constant(self.r), (), jnp.float32) if self.learn_r else self.r
    x = x_BHWC.astype(jnp.float32)
    m_B11C = jax.lax.stop_gradient(x.max(axis=(1, 2), keepdims=True))
    spread_BC = jnp.log1p(jnp.expm1(r * (x - m_B11C)).mean(axis=(1, 2))) / r
    return m_B11C[:, 0, 0] + spread_BC


class GeneralizedMeanPool(nn.Module):
  """gem: (mean clamp(x, eps)^p)^(1/p), learned p (Radenovic et al. 2018): mean at p = 1, max as p -> inf.

  Computed as m * (mean (x / m)^p)^(1/p) with m the clamped max (gem is positively homogeneous): the
  mean is then at least 1/N, so neither x^p nor its 1/p-th root under- or overflows, even for maps
  near zero. m carries no gradient (the value does not depend on m).
  """

  p: float = 3.0
  eps: float = 1e-6
  learn_p: bool = True
  per_channel: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    check_arg(self.p > 0, "p", self.p, "must be positive")
    check_arg(self.eps > 0, "eps", self.eps, "must be positive")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    p = self.param("p", nn.initializers.constant(self.p), (), jnp.float32) if self.learn_p else self.p
    x = jnp.maximum(x_BHWC.astype(jnp.float32), self.eps)
    m_B11C = jax.lax.stop_gradient(x.max(axis=(1, 2), keepdims=True))
    return m_B11C[:, 0, 0] * ((x / m_B11C) ** p).mean(axis=(1, 2)) ** (1 / p)


def wildcat_count(k: float, n: int) -> int:
  """The reference code's k: 0 if k <= 0, round(k * n) if k < 1 (a fraction of n), else min(int(k), n)."""
  if k <= 0:
    return 0
  if k < 1:
    return round(k * n)
  return min(int(k), n)


class WildcatPool(nn.Module):
  """topk (WILDCAT, Durand et al. CVPR 2017): mean of the k_max largest + alpha * mean of the k_min
  smallest values; the sum is halved when both parts are used, as durandtibo/wildcat.pytorch does.

  k_max and k_min are counts, or fractions of N = H*W when below 1 (rounded like the reference). The
  defaults are the paper's VOC setting (k = 0.2, alpha = 0.7).
  """

  k_max: float = 0.2
  k_min: float = 0.2
  alpha: float = 0.7
  per_channel: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    check_arg(self.k_max > 0, "k_max", self.k_max, "must be positive (a count, or a fraction below 1)")
    check_arg(self.k_min >= 0, "k_min", self.k_min, "must not be negative")

  def __call__(self, x_BHWC, train: bool = False):
    n = x_BHWC.shape[1] * x_BHWC.shape[2]
    k_max, k_min = wildcat_count(self.k_max, n), wildcat_count(self.k_min, n)
    check_arg(k_max > 0, "k_max", self.k_max, f"selects no location of the {n} in the map")
    sorted_BNC = jnp.sort(_tokens(x_BHWC), axis=1)  # ascending
    out_BC = sorted_BNC[:, n - k_max:].mean(axis=1)
    if k_min > 0 and self.alpha != 0:
      out_BC = (out_BC + self.alpha * sorted_BNC[:, :k_min].mean(axis=1)) / 2
    return out_BC


class GlobalWeightedRankPool(nn.Module):
  """gwrp (Kolesnikov & Lampert, SEC, ECCV 2016): sort descending, weight the j-th value by
  decay^(j-1) / sum_j decay^(j-1). decay = 1: mean; decay = 0: max.

  The default 0.996 is SEC's, chosen for 41x41 maps; on maps of a few dozen locations it is close to
  the mean (the weights only fall by a factor decay^N).
  """

  decay: float = 0.996
  per_channel: ClassVar[bool] = True

  def __post_init__(self):
    super().__post_init__()
    check_arg(0 <= self.decay <= 1, "decay", self.decay, "must be in [0, 1]")

  def __call__(self, x_BHWC, train: bool = False):
    n = x_BHWC.shape[1] * x_BHWC.shape[2]
    weights_N = np.float64(self.decay) ** np.arange(n)  # 0^0 = 1: decay 0 keeps the maximum
    weights_N = jnp.asarray(weights_N / weights_N.sum(), x_BHWC.dtype)
    descending_BNC = jnp.sort(_tokens(x_BHWC), axis=1)[:, ::-1]
    return jnp.einsum("bnc,n->bc", descending_BNC, weights_N)


class AvgMaxPool(nn.Module):
  """avgmax: (mean + max) / 2 of each channel (timm's adaptive_avgmax_pool2d)."""

  per_channel: ClassVar[bool] = True

  def __call__(self, x_BHWC, train: bool = False):
    return 0.5 * (x_BHWC.mean(axis=(1, 2)) + x_BHWC.max(axis=(1, 2)))


class CatAvgMaxPool(nn.Module):
  """catavgmax: the mean and the max of each channel side by side, width 2C (timm)."""

  per_channel: ClassVar[bool] = False
  only_pool_then_classify: ClassVar[str] = (
      "it gives two values per map, so it needs the dense layer that pool_then_classify puts after it")

  def __call__(self, x_BHWC, train: bool = False):
    return jnp.concatenate([x_BHWC.mean(axis=(1, 2)), x_BHWC.max(axis=(1, 2))], axis=-1)


class Flatten(nn.Module):
  """fc: flatten H*W*C (dropout first when `dropout` > 0); the placement's dense layer follows."""

  dropout: float = 0.0
  per_channel: ClassVar[bool] = False

  def __post_init__(self):
    super().__post_init__()
    check_arg(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    x_BD = x_BHWC.reshape(x_BHWC.shape[0], -1)
    return nn.Dropout(self.dropout, deterministic=not train)(x_BD)
