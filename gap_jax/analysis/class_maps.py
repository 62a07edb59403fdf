"""Class maps of any model, head and placement, for a whole split in one jitted pass.

They are the model's own `aux["class_maps"]`: for classify-then-pool the maps the head pools (NiN), for
pool-then-classify the class activation map M_c = sum_k W[k, c] f_k + b_c (CAM, Zhou et al. 2016). On request
they are upsampled to the input size with `jax.image.resize`, which puts map unit y at input coordinate
(y + 1/2) * H / h - 1/2 (half-pixel centres, as CAM and Choe et al. resize), not at the unit's analytic
receptive-field centre.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.data.augment import normalize
from gap_jax.errors import UserError
from gap_jax.steps import Programs


def upsample(maps_BHWK: jax.Array, size: tuple[int, int], method: str = "bilinear") -> jax.Array:
  """maps (B, h, w, K) -> (B, H, W, K)."""
  b, _, _, k = maps_BHWK.shape
  return jax.image.resize(maps_BHWK, (b, *size, k), method=method)


def check_has_maps(model, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
  """The (h, w, K) of the model's class maps; UserError if it makes none (pool-then-classify with a
  head that does not pool channel by channel, e.g. fc)."""
  x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(0), x)
  _, aux = jax.eval_shape(functools.partial(model.apply, train=False), params, x)
  if "class_maps" not in aux:
    raise UserError(f"this model ({type(model).__name__}, head {getattr(model, 'head', '?')!r}, placement "
                    f"{getattr(model, 'head_placement', '?')!r}) makes no class maps: a pool-then-classify "
                    "head must pool channel by channel (gap, gmp) for a class activation map to exist")
  return aux["class_maps"].shape[1:]


def make_class_maps_fn(model, mean, std, batch_size: int = 256, out_size: tuple[int, int] | None = None,
                       method: str = "bilinear"):
  """fn(params, images_NHWC_uint8) -> (logits (N, K), maps (N, h, w, K) float32), batch by batch inside
  one jitted program (jax.lax.map), upsampled to `out_size` when given. Compiled once per number of images and
  shared by every call with an equal model (a Linen module's repr lists its fields), whatever the mean and std."""
  program = PROGRAMS.get((repr(model), batch_size, out_size, method),
                         lambda: _class_maps_program(model, batch_size, out_size, method))
  stats = (np.asarray(mean, np.float32), np.asarray(std, np.float32))

  def fn(params, images_NHWC_uint8):
    images = jnp.asarray(images_NHWC_uint8)
    return program(params, images, images.shape[0], *stats)

  return fn


# The class-map programs of the models measured last: a sweep measures each seed's trained and untrained network.
PROGRAMS = Programs(kept=8)


def _class_maps_program(model, batch_size: int, out_size: tuple[int, int] | None, method: str):
  @functools.partial(jax.jit, static_argnums=2)
  def run(params, images, n: int, mean, std):
    def one_batch(i):
      idx = jnp.minimum(i * batch_size + jnp.arange(batch_size), n - 1)
      logits, aux = model.apply({"params": params}, normalize(images[idx], mean, std), train=False)
      maps = aux["class_maps"].astype(jnp.float32)
      if out_size is not None:
        maps = upsample(maps, out_size, method)
      return logits.astype(jnp.float32), maps
    logits, maps = jax.lax.map(one_batch, jnp.arange(-(-n // batch_size)))
    return logits.reshape(-1, logits.shape[-1])[:n], maps.reshape(-1, *maps.shape[2:])[:n]

  return run


def class_maps(trained, images_NHWC_uint8: np.ndarray | None = None, *, upsampled: bool = False,
               batch_size: int = 256, method: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
  """(logits, maps) as numpy for `images` (default: the whole test split) of a `gap_jax.trained.Trained`."""
  data = trained.data
  images = data.test.images if images_NHWC_uint8 is None else images_NHWC_uint8
  check_has_maps(trained.model, data.image_shape)
  out_size = tuple(data.image_shape[:2]) if upsampled else None
  fn = make_class_maps_fn(trained.model, data.mean, data.std, min(batch_size, len(images)), out_size, method)
  logits, maps = fn(trained.state.params, images)
  return np.asarray(logits), np.asarray(maps)


def maps_fn_of(model):
  """(params, x_BHWC normalised) -> class maps: the form receptive_field.effective_receptive_field takes."""
  return lambda params, x_BHWC: model.apply({"params": params}, x_BHWC, train=False)[1]["class_maps"]
