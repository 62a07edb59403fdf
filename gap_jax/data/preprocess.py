"""Preprocessing, as pylearn2 did it for the maxout and NiN papers. Each method has two parts: what it fits on
the training set (FITS) and what it does to each image on its own (PER_EXAMPLE, run on device):

- "standardize": uint8 images kept; fits the per-channel mean/std of the training pixels (on the [0, 1] scale),
  which gap_jax.data.augment.normalize applies inside the step.
- "gcn_zca" (CIFAR): global contrast normalization, scale 55, then ZCA whitening with filter bias 0.1 fitted on
  the (GCN'd) training images only; float32. The fitted mean and matrix are cached in an .npz file.
- "lcn" (SVHN): GCN (scale 1), then LeCun's local contrast normalization of each channel; fits nothing; float32.

The in-memory route (PREPROCESSORS) fits on the whole training set and transforms every image once, before
training. The streamed route (gap_jax/data/stream.py) fits from a pass over the stored records, each process
adding the FITS sums of its part, and applies PER_EXAMPLE to each batch: the same functions, so the two routes
train on the same numbers (bit for bit or to float32 rounding: tests/test_data_routes.py).

Computed with jax.numpy in chunks, so a GPU does it in seconds and host memory stays bounded.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.errors import UserError

GCN_SCALE = 55.0  # the maxout/NiN CIFAR recipe (pylearn2 CIFAR10(gcn=55.))
MIN_DIVISOR = 1e-8  # pylearn2's global_contrast_normalize: smaller norms are left undivided
ZCA_FILTER_BIAS = 0.1  # pylearn2 ZCA(filter_bias=0.1): added to the covariance's eigenvalues
LCN_KERNEL, LCN_SIGMA, LCN_THRESHOLD = 7, 2.0, 1e-4  # pylearn2 LeCunLCN defaults
CHUNK = 2048  # images per device call
CACHE_VERSION = 2  # bump when the fitted numbers would change, so old cache files are not used
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


def _add_up(parts: Iterable[tuple]) -> tuple:
  """The elementwise sums of tuples of arrays, added in order: one order for both routes, so the same chunks add up
  to the same bits."""
  total = None
  for part in parts:
    total = part if total is None else tuple(a + b for a, b in zip(total, part))
  return total


@jax.jit
def _row_sums(x_BD):
  return x_BD.sum(0), jnp.matmul(x_BD.T, x_BD, precision=HIGHEST)


def zca_sums(x_ND: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(sum of the rows, sum of their outer products) in float64, CHUNK rows at a time: what ZCA is fitted from.
  Sums over the parts of a set add up to the whole set's, so each process of a streamed run sums its own part."""
  with jax.enable_x64(True):
    return _add_up(tuple(np.asarray(a) for a in _row_sums(jnp.asarray(x_ND[i:i + CHUNK], jnp.float64)))
                   for i in range(0, len(x_ND), CHUNK))


def zca_from_sums(n: int, total_D: np.ndarray, gram_DD: np.ndarray,
                  filter_bias: float = ZCA_FILTER_BIAS) -> tuple[np.ndarray, np.ndarray]:
  """pylearn2's ZCA.fit in float64, from the zca_sums of n rows: the feature mean and
  P = (C + filter_bias I)^(-1/2), where C = gram / n - mean mean^T is the (1/n) covariance of the rows (float64
  keeps the subtraction exact to ~1e-15 for GCN'd pixels). Whitened data (x - mean) @ P have covariance
  C (C + bI)^-1."""
  with jax.enable_x64(True):
    mean = jnp.asarray(total_D, jnp.float64) / n
    cov = jnp.asarray(gram_DD, jnp.float64) / n - jnp.outer(mean, mean)
    eigs, eigv = jnp.linalg.eigh(cov + filter_bias * jnp.eye(len(mean), dtype=jnp.float64))
    whitening = jnp.matmul(eigv / jnp.sqrt(eigs), eigv.T, precision=HIGHEST)
    return np.asarray(mean, np.float32), np.asarray(whitening, np.float32)


def fit_zca(x_ND: np.ndarray, filter_bias: float = ZCA_FILTER_BIAS) -> tuple[np.ndarray, np.ndarray]:
  """ZCA fitted on the rows of x_ND (zca_from_sums of their zca_sums)."""
  return zca_from_sums(len(x_ND), *zca_sums(x_ND), filter_bias)


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


def load_cache(path: Path, meta: dict, expected: dict[str, tuple], what: str) -> dict[str, np.ndarray] | None:
  """The arrays cached in `path` if it holds exactly what `meta` describes, each of the (shape, dtype) that
  `expected` gives its name (and finite), else None."""
  try:
    with np.load(path, allow_pickle=False) as z:
      stored, arrays = json.loads(str(z["meta"])), {name: z[name] for name in expected}
  except Exception as e:  # any unreadable file (truncated zip, bad header, missing key...) is rebuilt
    _warn(f"{what} cache {path} is corrupt ({type(e).__name__}: {e}); computing it again and replacing it")
    return None
  if stored != json.loads(json.dumps(meta)):  # as stored: tuples become lists
    _warn(f"{what} cache {path} was fitted on other data or settings; computing it again and replacing it")
    return None
  for name, (shape, dtype) in expected.items():
    a = arrays[name]
    if a.shape != shape or a.dtype != dtype or (np.issubdtype(dtype, np.floating) and not np.isfinite(a).all()):
      _warn(f"{what} cache {path} holds arrays of the wrong shape, type or values; computing them again")
      return None
  return arrays


def save_cache(path: Path, meta: dict, arrays: dict[str, np.ndarray], what: str) -> None:
  """Write through a temporary file of this writer's own and rename, so a crash or a parallel writer (another
  run, or another process of a streamed run) never leaves half a file."""
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, meta=json.dumps(meta, sort_keys=True), **arrays)
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
      raise
  except OSError as e:
    _warn(f"cannot write the {what} cache {path} ({e.strerror}): the next run computes it again; "
          "set --config.preprocess_cache_dir to a writable folder")


def cached(path: Path, meta: dict, expected: dict[str, tuple], compute: Callable[[], dict], what: str,
           agreed: Callable[[bool], bool] = bool) -> dict[str, np.ndarray]:
  """The arrays cached in `path` for `meta`, or compute()'s, then cached. agreed(found) says whether a found cache
  is used: a streamed run's processes use it only where every one found it, else all compute together."""
  found = load_cache(path, meta, expected, what) if path.exists() else None
  if agreed(found is not None):
    return found
  print(f"{what}: computing it once (cached in {path})...")
  arrays = compute()
  save_cache(path, meta, arrays, what)
  return arrays


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


def float_stats(channels: int) -> tuple[np.ndarray, np.ndarray]:
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


@dataclasses.dataclass(frozen=True)
class Fit:
  """What a method fits on the training set: sums(uint8 images) -> arrays whose sums over the parts of a set are
  the whole set's; finish(n, *sums) -> the fitted arrays, named `names`, of the shapes shapes(image_shape);
  `settings` join the key of its cache."""
  names: tuple[str, ...]
  shapes: Callable[[tuple[int, ...]], tuple[tuple[int, ...], ...]]
  sums: Callable[[np.ndarray], tuple[np.ndarray, ...]]
  finish: Callable[..., tuple[np.ndarray, ...]]
  settings: dict = dataclasses.field(default_factory=dict)

  def expected(self, image_shape) -> dict[str, tuple]:
    """{name: (shape, dtype)} of the fitted arrays, as load_cache checks them."""
    return {name: (shape, np.float32) for name, shape in zip(self.names, self.shapes(tuple(image_shape)))}


FITS = {  # "lcn" fits nothing
    "standardize": Fit(("mean", "std"), lambda s: ((s[-1],), (s[-1],)),
                       lambda images: (channel_histogram(images),), lambda n, hist: histogram_stats(hist)),
    "gcn_zca": Fit(("mean", "whitening"), lambda s: ((int(np.prod(s)),), (int(np.prod(s)),) * 2),
                   lambda images: zca_sums(gcn(images, GCN_SCALE).reshape(len(images), -1)),
                   lambda n, total, gram: zca_from_sums(n, total, gram, ZCA_FILTER_BIAS),
                   {"gcn_scale": GCN_SCALE, "filter_bias": ZCA_FILTER_BIAS}),
}


def fit(method: str, chunks: Iterable[np.ndarray],
        add_over_processes: Callable[[tuple], tuple] = lambda sums: sums) -> dict[str, np.ndarray]:
  """FITS[method] fitted on the training images that `chunks` yields: their sums added in order, then (a
  streamed run) over the processes."""
  spec = FITS[method]
  n, *sums = add_over_processes(_add_up((len(chunk), *spec.sums(chunk)) for chunk in chunks))
  return dict(zip(spec.names, spec.finish(n, *sums)))


@jax.jit
def _gcn_zca(x_BHWC, mean, whitening):
  flat = _gcn(x_BHWC.reshape(x_BHWC.shape[0], -1), GCN_SCALE)
  return _whiten(flat, mean, whitening).reshape(x_BHWC.shape)


@jax.jit
def _gcn_lcn(x_BHWC):
  return _lcn(_gcn(x_BHWC.reshape(x_BHWC.shape[0], -1), 1.0).reshape(x_BHWC.shape))


# What a method does to each image on its own, given what it fitted: (images, **fitted) -> float32 images, jitted.
# The in-memory route runs it on the whole set CHUNK at a time (per_example), the streamed one on each batch.
PER_EXAMPLE = {"gcn_zca": _gcn_zca, "lcn": _gcn_lcn}


def per_example(method: str, images: np.ndarray, fitted: dict[str, np.ndarray]) -> np.ndarray:
  """PER_EXAMPLE[method] of host images, CHUNK at a time."""
  on_device = {name: jnp.asarray(a) for name, a in fitted.items()}
  return _chunked(lambda x: PER_EXAMPLE[method](x, **on_device), images)


def standardize(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  if train.dtype != np.uint8:
    raise UserError(f"preprocess 'standardize' expects uint8 images, got {train.dtype}")
  fitted = fit("standardize", [train])
  return train, evaluated, fitted["mean"], fitted["std"]


def gcn_zca(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  spec = FITS["gcn_zca"]
  meta = {"version": CACHE_VERSION, **spec.settings, "fitted_on": cache_file.stem, "train": fingerprint(train)}
  fitted = cached(cache_file, meta, spec.expected(train.shape[1:]), what="ZCA", compute=lambda: dict(zip(
      spec.names, fit_zca(gcn(train, GCN_SCALE).reshape(len(train), -1), ZCA_FILTER_BIAS))))
  return (per_example("gcn_zca", train, fitted), per_example("gcn_zca", evaluated, fitted),
          *float_stats(train.shape[-1]))


def gcn_lcn(train: np.ndarray, evaluated: np.ndarray, cache_file: Path):
  return per_example("lcn", train, {}), per_example("lcn", evaluated, {}), *float_stats(train.shape[-1])


PREPROCESSORS = {"standardize": standardize, "gcn_zca": gcn_zca, "lcn": gcn_lcn}
