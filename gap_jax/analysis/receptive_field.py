"""Receptive fields: analytic (Araujo, Norris, Sim, Distill 2019) and effective (Luo et al., NIPS 2016).

Analytic, along one spatial axis, for layers l = 1..L with kernel k, stride s, left padding p, dilation d
(k' = d (k - 1) + 1), by the recursion
  r_l = r_{l-1} + (k'_l - 1) S_{l-1},  S_l = S_{l-1} s_l,  P_l = P_{l-1} + p_l S_{l-1}, from r = S = 1, P = 0,
and unit y of layer l is centred at input pixel -P_l + y S_l + (r_l - 1) / 2. Every model here is square and
uses the same kernel along both axes, so one axis describes both.

Effective: put gradient 1 on one class-map location, back-propagate to the input, average |gradient| (summed
over input channels) over inputs and parameter sets, and report the smallest square centred on the unit's
analytic centre (or on the centre of mass) that holds a stated share of the gradient mass, and its width as
a Gaussian's: Luo et al. show it tends to one whose width grows like the square root of depth.
"""

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.errors import UserError
from gap_jax.models.cnn import CNN_LAYERS

SAME = "SAME"


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  """One layer's geometry. `padding` is the left (top) padding in pixels, or "SAME" (XLA's rule: total
  max((out - 1) s + k' - n, 0) with out = ceil(n / s), the smaller half on the left), which needs the
  input size."""

  name: str
  kernel: int
  stride: int = 1
  padding: int | str = 0
  dilation: int = 1

  @property
  def extent(self) -> int:
    return self.dilation * (self.kernel - 1) + 1


@dataclasses.dataclass(frozen=True)
class UnitField:
  """The receptive field of every unit of one layer, along one axis, in input pixels."""

  name: str
  size: int  # r
  stride: int  # S: input pixels between neighbouring units
  padding: int  # P: effective left padding
  out_size: int | None  # units along the axis (None when the input size is not given)

  def centre(self, y: int | np.ndarray) -> float | np.ndarray:
    """Input coordinate of the centre of unit y."""
    return -self.padding + y * self.stride + (self.size - 1) / 2

  def interval(self, y: int, clip_to: int | None = None) -> tuple[int, int]:
    """First and last input pixel (inclusive) seen by unit y, optionally clipped to [0, clip_to - 1]."""
    lo = -self.padding + y * self.stride
    hi = lo + self.size - 1
    return (lo, hi) if clip_to is None else (max(lo, 0), min(hi, clip_to - 1))


def _left_padding(spec: LayerSpec, n: int | None) -> tuple[int, int | None]:
  """(left padding, output size) of `spec` on an input of n units."""
  if spec.padding == SAME:
    if n is None:
      raise UserError(f"layer {spec.name!r} has padding 'SAME', which depends on the input size: pass it")
    out = -(-n // spec.stride)
    total = max((out - 1) * spec.stride + spec.extent - n, 0)
    return total // 2, out
  p = int(spec.padding)
  if n is None:
    return p, None
  # Symmetric explicit padding, as lax.conv with [(p, p)] and this repo's Conv use.
  return p, (n + 2 * p - spec.extent) // spec.stride + 1


def receptive_fields(specs: Sequence[LayerSpec], input_size: int | None = None) -> list[UnitField]:
  """The field of every layer's units, by the Araujo et al. recursion; [i] is after specs[i]."""
  r, s, p, n = 1, 1, 0, input_size
  fields = []
  for spec in specs:
    if spec.kernel < 1 or spec.stride < 1 or spec.dilation < 1:
      raise UserError(f"layer {spec.name!r}: kernel, stride and dilation must be >= 1, got {spec}")
    left, n = _left_padding(spec, n)
    r += (spec.extent - 1) * s
    p += left * s
    s *= spec.stride
    fields.append(UnitField(spec.name, r, s, p, n))
  return fields


# --- The shipped models' layer geometry, derived from their public tables. ---

# gap_jax/models/cnn.py's layer table (features, kernel, pool after), which that module keeps inside
# ConventionalCNN.__call__; its class-map layer is a 3x3 'SAME' locally connected layer.
MAX_POOL = dict(kernel=3, stride=2, padding=SAME)  # gap_jax.models.layers.max_pool_ceil


def nin_specs(blocks) -> list[LayerSpec]:
  """NiN's feature layers: each block's convolutions (stride 1, pad k // 2), max-pool 3/2 'SAME' after
  every block but the last. The 1x1 class-map layer is added by `class_map_specs`."""
  specs = []
  for b, block in enumerate(blocks):
    for i, (_, k) in enumerate(block):
      specs.append(LayerSpec(f"block{b + 1}_conv{i + 1}_{k}x{k}", k, 1, k // 2))
    if b < len(blocks) - 1:
      specs.append(LayerSpec(f"block{b + 1}_maxpool", **MAX_POOL))
  return specs


def cnn_specs() -> list[LayerSpec]:
  specs = []
  for i, (_, k, pool) in enumerate(CNN_LAYERS):
    specs.append(LayerSpec(f"conv{i + 1}_{k}x{k}", k, 1, k // 2))
    if pool:
      specs.append(LayerSpec(f"maxpool{i + 1}", **MAX_POOL))
  return specs


def class_map_specs(config) -> list[LayerSpec]:
  """Every layer from the input to the class maps of the model a training config describes.

  Classify-then-pool adds the map layer (NiN: 1x1 conv; cnn: 3x3 local layer, pad 1); pool-then-classify
  maps are a 1x1 linear combination of the features, which adds nothing."""
  from gap_jax.models import MODELS, chosen_model_args  # the models' own tables, so an edit there shows up here
  name = config.model
  if name == "cnn":
    specs, map_layer = cnn_specs(), LayerSpec("class_maps_local_3x3", 3, 1, 1)
  elif name in MODELS and "blocks" in getattr(MODELS[name], "keywords", {}):
    blocks = chosen_model_args(config).get("blocks", MODELS[name].keywords["blocks"])
    specs, map_layer = nin_specs(blocks), LayerSpec("class_maps_1x1", 1)
  else:
    raise UserError(f"no layer geometry known for model {name!r}: describe it as a list of LayerSpec")
  if config.head_placement == "classify_then_pool":
    specs.append(map_layer)
  return specs


# --- Effective receptive field. ---

MapsFn = Callable[[object, jax.Array], jax.Array]  # (params, x_BHWC) -> maps_BHWK


@dataclasses.dataclass(frozen=True)
class EffectiveField:
  erf_HW: np.ndarray  # mean |d map[y, x, k] / d input| summed over channels, scaled to sum 1
  centre_of_mass: tuple[float, float]
  centre: tuple[float, float]  # where the square that measures `size` is centred
  size: int | None  # side of the smallest such square holding `mass` of the total (None: all-zero gradient)
  mass: float
  zero_gradient_fraction: float  # share of (input, parameter set) pairs whose gradient is exactly zero


def input_gradients(maps_fn: MapsFn, params, x_BHWC: jax.Array, position: tuple[int, int],
                    classes_B: jax.Array) -> jax.Array:
  """d maps[b, y, x, classes_B[b]] / d x[b], one input at a time: (B, H, W, C)."""
  def unit(x_HWC, k):
    return maps_fn(params, x_HWC[None])[0, position[0], position[1], k].astype(jnp.float32)
  return jax.vmap(jax.grad(unit))(x_BHWC, classes_B)


@functools.partial(jax.jit, static_argnames=("maps_fn", "position"))
def _abs_gradients(params, x_BHWC, classes_B, *, maps_fn: MapsFn, position: tuple[int, int]):
  """|input gradient| summed over channels (B, H, W); compiled once per maps_fn object and position."""
  return jnp.abs(input_gradients(maps_fn, params, x_BHWC, position, classes_B)).sum(-1)


def square_size(erf_HW: np.ndarray, centre: tuple[float, float], mass: float) -> int | None:
  """Side of the smallest square centred at `centre` whose pixels hold `mass` of erf_HW's total."""
  total = erf_HW.sum()
  if total <= 0:
    return None
  ys, xs = np.indices(erf_HW.shape)
  dist = np.maximum(np.abs(ys - centre[0]), np.abs(xs - centre[1])).ravel()  # Chebyshev distance
  order = np.argsort(dist, kind="stable")
  held = np.cumsum(erf_HW.ravel()[order]) / total
  radius = dist[order][np.searchsorted(held, mass - 1e-9)]
  return int(round(2 * radius + 1))


def gaussian_width(erf_HW: np.ndarray, centre: tuple[float, float]) -> float:
  """The width sigma (px) of the isotropic Gaussian with erf_HW's second moment about `centre`: the root of
  the mean squared distance per axis, sqrt(sum w (dy^2 + dx^2) / (2 sum w)). NaN for an all-zero field."""
  total = erf_HW.sum()
  if total <= 0:
    return float("nan")
  ys, xs = np.indices(erf_HW.shape)
  r2 = (ys - centre[0]) ** 2 + (xs - centre[1]) ** 2
  return float(np.sqrt((erf_HW * r2).sum() / (2 * total)))


def effective_receptive_field(maps_fn: MapsFn, params_list: Sequence, x_BHWC, position: tuple[int, int],
                              classes_B=None, *, mass: float = 0.95, centre=None,
                              batch_size: int = 32) -> EffectiveField:
  """Luo et al.'s effective receptive field of class-map unit `position`, averaged over the inputs and
  over `params_list` (one parameter set per seed). `classes_B` picks each input's map (default 0);
  `centre` (default: the centre of mass) is where the size-measuring square sits. Reuse one `maps_fn`
  object across calls to compile once."""
  x_BHWC = jnp.asarray(x_BHWC, jnp.float32)
  n = x_BHWC.shape[0]
  classes_B = jnp.zeros((n,), jnp.int32) if classes_B is None else jnp.asarray(classes_B, jnp.int32)
  position = (int(position[0]), int(position[1]))
  grads = functools.partial(_abs_gradients, maps_fn=maps_fn, position=position)
  total_HW, zero = np.zeros(x_BHWC.shape[1:3], np.float64), 0
  for params in params_list:
    for i in range(0, n, batch_size):
      g_BHW = np.asarray(grads(params, x_BHWC[i:i + batch_size], classes_B[i:i + batch_size]), np.float64)
      total_HW += g_BHW.sum(0)
      zero += int((g_BHW.reshape(len(g_BHW), -1).max(1) == 0).sum())
  s = total_HW.sum()
  erf_HW = total_HW / s if s > 0 else total_HW
  ys, xs = np.indices(erf_HW.shape)
  com = (float((ys * erf_HW).sum()), float((xs * erf_HW).sum())) if s > 0 else (float("nan"),) * 2
  centre = com if centre is None else (float(centre[0]), float(centre[1]))
  return EffectiveField(erf_HW, com, centre, square_size(erf_HW, centre, mass), mass,
                        zero / (n * len(params_list)))
