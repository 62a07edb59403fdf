"""Preprocessing on the host, once per run before training, as pylearn2 did it for the maxout and NiN
papers. Each PREPROCESSORS entry maps (train images, eval images, cache file) to the arrays the training
loop gets and the per-channel mean/std that gap_jax.data.augment.normalize applies:

- "standardize": uint8 images kept; mean/std of the training pixels (on the [0, 1] scale).
- "gcn_zca" (CIFAR): global contrast normalization, scale 55, then ZCA whitening with filter bias 0.1
  fitted on the training images only; float32. The fitted mean and matrix are cached in an .npz file.
- "lcn" (SVHN): GCN (scale 1), then LeCun's local contrast normalization of each channel; float32.

Computed with jax.numpy in chunks, so a GPU does it in seconds and host memory stays bounded.
"""

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.errors import UserError

GCN_SCALE = 55.0  # the maxout/NiN CIFAR recipe (pylearn2 CIFAR10(gcn=55.))
MIN_DIVISOR = 1e-8  # pylearn2's global_contrast_normalize: smaller norms are left undivided
ZCA_FILTER_BIAS = 0.1  # pylearn2 ZCA(filter_bias=0.1): added to the covariance's eigenvalues
LCN_KERNEL, LCN_SIGMA, LCN_THRESHOLD = 7, 2.0, 1e-4  # pylearn2 LeCunLCN defaults
CHUNK = 2048  # images per device call
CACHE_VERSION = 1  # bump when the fitted numbers would change, so old cache files are not used
HIGHEST = jax.lax.Precision.HIGHEST  # no TF32/bf16 matmul passes on GPU/TPU: whitening needs fp32


def _chunked(fn: Callable, x: np.ndarray, *args) -> np.ndarray:
  """np.asarray(fn(x, *args)) computed CHUNK rows at a time."""
  out = None
  for i in range(0, len(x), CHUNK):
    y = np.asarray(fn(jnp.asarray(x[i:i + CHUNK]), *args))
    if out is None:
      out = np.empty((len(x), *y.shape[1:]), y.dtype)
    out[i:i + len(y)] = y
  return out


@jax.jit
def _gcn(x_BD, scale):
  x = x_BD.astype(jnp.float32)
  x = x - x.mean(axis=1, keepdims=True)
  norms = jnp.sqrt(jnp.sum(jnp.square(x), axis=1, keepdims=True)) / scale
  return x / jnp.where(norms < MIN_DIVISOR, 1.0, norms)


def gcn(images: np.ndarray, scale: float) -> np.ndarray:
  """pylearn2's global_contrast_normalize(scale, subtract_mean=True, use_std=False, sqrt_bias=0,
  min_divisor=1e-8) over all pixels and channels of each image: zero mean, L2 norm `scale`."""
  flat = images.reshape(len(images), -1)
  return _chunked(_gcn, flat, np.float32(scale)).reshape(images.shape)


def fit_zca(x_ND: np.ndarray, filter_bias: float = ZCA_FILTER_BIAS) -> tuple[np.ndarray, np.ndarray]:
  """pylearn2's ZCA.fit in float64: the feature mean and P = (C + filter_bias I)^(-1/2), where C is the
  (1/N) covariance of the centred rows. Whitened data (x - mean) @ P has covariance C (C + bI)^-1."""
  n, d = x_ND.shape
  with jax.enable_x64(True):
    total = jnp.zeros(d, jnp.float64)
    for i in range(0, n, CHUNK):
      total += jnp.asarray(x_ND[i:i + CHUNK], jnp.float64).sum(0)
    mean = total / n
    cov = jnp.zeros((d, d), jnp.float64)
    for i in range(0, n, CHUNK):
      xc = jnp.asarray(x_ND[i:i + CHUNK], jnp.float64) - mean
      cov += jnp.matmul(xc.T, xc, precision=HIGHEST)
    eigs, eigv = jnp.linalg.eigh(cov / n + filter_bias * jnp.eye(d, dtype=jnp.float64))
    whitening = jnp.matmul(eigv / jnp.sqrt(eigs), eigv.T, precision=HIGHEST)
    return np.asarray(mean, np.float32), np.asarray(whitening, np.float32)


@jax.jit
def _whiten(x_BD, mean_D, whitening_DD):
  return jnp.matmul(x_BD - mean_D, whitening_DD, precision=HIGHEST)


def zca_apply(images: np.ndarray, mean: np.ndarray, whitening: np.ndarray) -> np.ndarray:
  flat = images.reshape(len(images), -1)
  return _chunked(_whiten, flat, jnp.asarray(mean), jnp.asarray(whitening)).reshape(images.shape)


def fingerprint(images: np.ndarray) -> str:
  """A digest of the exact training images, so a cache fitted on other data is never used."""
  h = hashlib.blake2b(digest_size=16)
  h.update(repr((images.shape, str(images.dtype))).encode())
  h.update(np.ascontiguousarray(images).data)
  return h.hexdigest()


def _warn(message: str) -> None:
  print(f"warning: {message}", file=sys.stderr)


def _load_zca(path: Path, meta: dict, d: int) -> tuple[np.ndarray, np.ndarray] | None:
  """The cached (mean, whitening) if `path` holds exactly what `meta` describes, else None."""
  try:
    with np.load(path, allow_pickle=False) as z:
      stored, mean, whitening = json.loads(str(z["meta"])), z["mean"], z["whitening"]
  except Exception as e:  # any unreadable file (truncated zip, bad header, missing key...) is rebuilt
    _warn(f"ZCA cache {path} is corrupt ({type(e).__name__}: {e}); fitting again and replacing it")
    return None
  if stored != meta:
    _warn(f"ZCA cache {path} was fitted on other data or settings; fitting again and replacing it")
    return None
  if (mean.shape != (d,) or whitening.shape != (d, d) or mean.dtype != np.float32
      or whitening.dtype != np.float32 or not (np.isfinite(mean).all() and np.isfinite(whitening).all())):
    _warn(f"ZCA cache {path} holds arrays of the wrong shape, type or values; fitting again")
    return None
  return mean, whitening


def _save_zca(path: Path, meta: dict, mean: np.ndarray, whitening: np.ndarray) -> None:
  """Write through a temporary file and rename, so a crash or a parallel run never leaves half a file."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
      np.savez(f, meta=json.dumps(meta, sort_keys=True), mean=mean, whitening=whitening)
    os.replace(tmp, path)
  except OSError as e:
    with contextlib.suppress(OSError):  # e.g. the parent is a file: there is no tmp to remove
      tmp.unlink()
    _warn(f"cannot write the ZCA cache {path} ({e.strerror}): the next run fits again; "
          "set --config.preprocess_cache_dir to a writable folder")


def cached_zca(x_ND: np.ndarray, cache_file: Path, meta: dict) -> tuple[np.ndarray, np.ndarray]:
  if cache_file.exists():
    loaded = _load_zca(cache_file, meta, x_ND.shape[1])
    if loaded is not None:
      return loaded
  print(f"fitting ZCA whitening on {x_ND.shape[0]} images of {x_ND.shape[1]} values (once; "
        f"cached in {cache_file})...")
  mean, whitening = fit_zca(x_ND, ZCA_FILTER_BIAS)
  _save_zca(cache_file, meta, mean, whitening)
  return mean, whitening


def _gaussian_kernel(size: int, sigma: float) -> np.ndarray:
  r = np.arange(size) - size // 2
  g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


@jax.jit
def _lcn(x_BHWC):
  c = x_BHWC.shape[-1]
  kernel = jnp.tile(_gaussian_kernel(LCN_KERNEL, LCN_SIGMA)[:, :, None, None], (1, 1, 1, c))
  blur = lambda y: jax.lax.conv_general_dilated(  # per channel, zero padding, same size
      y, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c,
      precision=HIGHEST)
  centered = x_BHWC - blur(x_BHWC)
  local = jnp.sqrt(jnp.maximum(blur(jnp.square(x_BHWC)), 0.0))
  divisor = jnp.maximum(jnp.maximum(local.mean(axis=(1, 2), keepdims=True), local), LCN_THRESHOLD)
  return centered / divisor


def lcn(images: np.ndarray) -> np.ndarray:
  """pylearn2's lecun_lcn on each channel: subtract the Gaussian-weighted (7x7, sigma 2) local mean and
  divide by the Gaussian-weighted local root mean square of the input, or by that quantity's mean over
  the image where it is larger, never by less than 1e-4. (pylearn2's LeCunLCN.transform returns after
  the first channel; this normalizes all of them.)"""
  return _chunked(_lcn, np.asarray(images, np.float32))


def _float_stats(channels: int) -> tuple[np.ndarray, np.ndarray]:
  """normalize() uses float images as they are; mean 0, std 1 say the same thing."""
  return np.zeros(channels, np.float32), np.ones(channels, np.float32)


def channel_histogram(images: np.ndarray) -> np.ndarray:
  """(C, 256) int64: how many pixels of each channel hold each uint8 value. Exact integers, so histograms of
  parts of a training set (one per process, when streaming) add up to the whole set's in any order."""
  channels = images.shape[-1]
  hist = np.zeros((channels, 256), np.int64)
  for i in range(0, len(images), CHUNK):
    chunk = images[i:i + CHUNK].reshape(-1, channels)
    for c in range(channels):
      hist[c] += np.bincount(chunk[:, c], minlength=256)
  return hist


def histogram_stats(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std (on the [0, 1] scale; a constant channel gets std 1) of the pixels counted
  by a channel_histogram."""
  values = np.arange(256) / 255.0
  count = hist.sum(1)
  mean = hist @ values / count
  std = np.sqrt(np.sum(hist * np.square(values - mean[:, None]), 1) / count)
  return mean.astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


def standardize(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  if train.dtype != np.uint8:
    raise UserError(f"preprocess 'standardize' expects uint8 images, got {train.dtype}")
  return (train, evaluated, *histogram_stats(channel_histogram(train)))


def gcn_zca(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  meta = {"version": CACHE_VERSION, "gcn_scale": GCN_SCALE, "filter_bias": ZCA_FILTER_BIAS,
          "fitted_on": cache_file.stem, "train": fingerprint(train)}
  train_g, eval_g = gcn(train, GCN_SCALE), gcn(evaluated, GCN_SCALE)
  mean, whitening = cached_zca(train_g.reshape(len(train_g), -1), cache_file, meta)
  return (zca_apply(train_g, mean, whitening), zca_apply(eval_g, mean, whitening),
          *_float_stats(train.shape[-1]))


def gcn_lcn(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  return lcn(gcn(train, 1.0)), lcn(gcn(evaluated, 1.0)), *_float_stats(train.shape[-1])


PREPROCESSORS = {"standardize": standardize, "gcn_zca": gcn_zca, "lcn": gcn_lcn}
