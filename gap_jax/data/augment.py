"""Preprocessing and augmentation on device, inside the jitted step: random crop with zero padding and
horizontal flip, each image drawn from a key that depends only on the step (so a run is reproducible
and a resumed run sees the same images)."""

import jax
import jax.numpy as jnp


def normalize(images_BHWC, mean_C, std_C):
  """uint8 pixels -> [0, 1] -> standardized by the training mean/std. Float images were preprocessed on
  the host (GCN+ZCA, LCN: gap_jax.data.preprocess) and are used as they are."""
  if jnp.issubdtype(images_BHWC.dtype, jnp.floating):
    return images_BHWC.astype(jnp.float32)
  return (images_BHWC.astype(jnp.float32) / 255.0 - mean_C) / std_C


def random_crop(key, x_BHWC, padding: int):
  """Pad by `padding` zeros on each side, then crop a random H x W window per image."""
  b, h, w, _ = x_BHWC.shape
  padded = jnp.pad(x_BHWC, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)
  crop = lambda img, off: jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def random_flip(key, x_BHWC):
  flip = jax.random.bernoulli(key, 0.5, (x_BHWC.shape[0], 1, 1, 1))
  return jnp.where(flip, x_BHWC[:, :, ::-1, :], x_BHWC)


def augment(key, x_BHWC, crop_padding: int, flip: bool):
  crop_key, flip_key = jax.random.split(key)
  if crop_padding > 0:
    x_BHWC = random_crop(crop_key, x_BHWC, crop_padding)
  if flip:
    x_BHWC = random_flip(flip_key, x_BHWC)
  return x_BHWC
