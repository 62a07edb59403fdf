"""GCN, ZCA and LCN against independent numpy transcriptions of pylearn2's formulas, fits added up from the
processes' shares of the training set (the streamed route), and the ZCA cache."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax.data import preprocess
from gap_jax.data.augment import normalize


def images(n=16, shape=(6, 6, 3), seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def test_gcn_gives_zero_mean_and_norm_55_as_pylearn2():
  x = images()
  x[3] = 17  # a constant image: its norm is 0 < min_divisor, so it is centred and left undivided
  out = preprocess.gcn(x, 55.0)
  assert out.dtype == np.float32 and out.shape == x.shape
  flat = out.reshape(len(x), -1).astype(np.float64)
  np.testing.assert_allclose(flat.mean(1), 0, atol=1e-4)
  norms = np.linalg.norm(flat, axis=1)
  np.testing.assert_allclose(np.delete(norms, 3), 55, rtol=1e-5)
  assert norms[3] == 0
  # pylearn2's global_contrast_normalize(scale=55, subtract_mean=True, use_std=False, sqrt_bias=0,
  # min_divisor=1e-8), transcribed
  ref = x.reshape(len(x), -1).astype(np.float64)
  ref = ref - ref.mean(1, keepdims=True)
  normalizers = np.sqrt((ref ** 2).sum(1)) / 55
  normalizers[normalizers < 1e-8] = 1
  np.testing.assert_allclose(flat, ref / normalizers[:, None], atol=1e-4)


def correlated(n, d, scale, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * scale + 3).astype(np.float32)


@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_zca_whitened_covariance_is_the_formulas(scale):
  """Cov of (x - mean) @ P on the fitting data is C (C + 0.1 I)^-1 = V diag(l / (l + 0.1)) V^T."""
  x = correlated(500, 12, scale)
  mean, whitening = preprocess.fit_zca(x, 0.1)
  np.testing.assert_allclose(whitening, whitening.T, atol=1e-5)
  x64 = x.astype(np.float64)
  centred = x64 - x64.mean(0)
  eigs, vecs = np.linalg.eigh(centred.T @ centred / len(x))  # independent, float64 numpy
  expected = (vecs * (eigs / (eigs + 0.1))) @ vecs.T
  white = preprocess.zca_apply(x, mean, whitening).astype(np.float64)
  white_c = white - white.mean(0)
  np.testing.assert_allclose(white_c.T @ white_c / len(x), expected, atol=2e-4)
  np.testing.assert_allclose(mean, x64.mean(0), rtol=1e-5)


def test_zca_whitens_to_identity_where_the_regularizer_is_negligible():
  x = correlated(2000, 10, 100.0)  # every eigenvalue >> 0.1
  white = preprocess.zca_apply(x, *preprocess.fit_zca(x, 0.1)).astype(np.float64)
  cov = np.cov(white, rowvar=False, bias=True)
  np.testing.assert_allclose(cov, np.eye(10), atol=1e-3)


@pytest.mark.parametrize("processes", [2, 3])
def test_a_fit_from_the_processes_sums_is_the_whole_sets_fit(processes):
  """A streamed run's processes each sum their own share of the training set and add up their sums: the channel
  statistics come out exact, the ZCA fit equal to the one-process fit to float32 rounding (its float64 sums are
  added in another order: measured at most half an eps of the largest entry)."""
  x = images(101, (4, 4, 3))
  shares = [x[p * 101 // processes:(p + 1) * 101 // processes] for p in range(processes)]
  for method in ("standardize", "gcn_zca"):
    spec = preprocess.FITS[method]
    others = [(len(share), *spec.sums(share)) for share in shares[1:]]
    fitted = preprocess.fit(method, [shares[0]], lambda mine: tuple(sum(s) for s in zip(mine, *others)))
    whole = preprocess.fit(method, [x])
    assert fitted.keys() == whole.keys() == set(spec.names)
    for name in spec.names:
      if method == "standardize":
        np.testing.assert_array_equal(fitted[name], whole[name])
      else:
        eps = np.finfo(np.float32).eps * np.abs(whole[name]).max()
        np.testing.assert_allclose(fitted[name], whole[name], rtol=0, atol=eps)
  mean, whitening = preprocess.fit_zca(preprocess.gcn(x, 55).reshape(101, -1))  # the in-memory route's fit
  np.testing.assert_array_equal(whole["mean"], mean)
  np.testing.assert_array_equal(whole["whitening"], whitening)


def test_gcn_zca_fits_on_train_only_and_returns_float_images(tmp_path):
  train, evaluated = images(40, (4, 4, 3)), images(10, (4, 4, 3), seed=1)
  tx, ex, mean, std = preprocess.gcn_zca(train, evaluated, tmp_path / "zca-x-train.npz")
  assert tx.dtype == ex.dtype == np.float32 and tx.shape == train.shape and ex.shape == evaluated.shape
  np.testing.assert_array_equal(mean, np.zeros(3))
  np.testing.assert_array_equal(std, np.ones(3))
  fit = preprocess.fit_zca(preprocess.gcn(train, 55).reshape(40, -1), 0.1)
  np.testing.assert_allclose(ex, preprocess.zca_apply(preprocess.gcn(evaluated, 55), *fit), atol=1e-4)
  np.testing.assert_array_equal(normalize(jnp.asarray(ex), mean, std), ex)  # used as they are


def test_second_run_reads_the_cache_instead_of_fitting(tmp_path, monkeypatch):
  train, evaluated = images(30, (4, 4, 3)), images(5, (4, 4, 3), seed=1)
  cache = tmp_path / "deep" / "zca-x-train.npz"
  first = preprocess.gcn_zca(train, evaluated, cache)
  assert cache.is_file()
  monkeypatch.setattr(preprocess, "fit_zca", lambda *a: pytest.fail("refitted despite a valid cache"))
  second = preprocess.gcn_zca(train, evaluated, cache)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a, b)


def damage(path: Path, how: str) -> None:
  if how == "garbage":
    path.write_bytes(b"not a zip file at all")
  elif how == "truncated":
    path.write_bytes(path.read_bytes()[:200])
  elif how == "other_data":  # a valid file fitted on other images
    with np.load(path) as z:
      meta, mean, whitening = json.loads(str(z["meta"])), z["mean"], z["whitening"]
    meta["train"] = "0" * 32
    np.savez(path, meta=json.dumps(meta, sort_keys=True), mean=mean, whitening=whitening)
  elif how == "wrong_shape":
    with np.load(path) as z:
      meta = str(z["meta"])
    np.savez(path, meta=meta, mean=np.zeros(3, np.float32), whitening=np.eye(3, dtype=np.float32))
  elif how == "nan":
    with np.load(path) as z:
      meta, mean, whitening = str(z["meta"]), z["mean"], z["whitening"].copy()
    whitening[0, 0] = np.nan
    np.savez(path, meta=meta, mean=mean, whitening=whitening)


@pytest.mark.parametrize("how,message", [
    ("garbage", "is corrupt"), ("truncated", "is corrupt"), ("other_data", "fitted on other data"),
    ("wrong_shape", "wrong shape"), ("nan", "wrong shape, type or values")])
def test_a_bad_cache_is_rebuilt_not_trusted(tmp_path, capsys, how, message):
  train, evaluated = images(30, (4, 4, 3)), images(5, (4, 4, 3), seed=1)
  cache = tmp_path / "zca-x-train.npz"
  good = preprocess.gcn_zca(train, evaluated, cache)
  damage(cache, how)
  capsys.readouterr()
  rebuilt = preprocess.gcn_zca(train, evaluated, cache)
  assert message in capsys.readouterr().err
  for a, b in zip(good, rebuilt):
    np.testing.assert_allclose(a, b, atol=1e-5)
  with np.load(cache) as z:  # replaced by a good file
    assert z["whitening"].shape == (48, 48) and np.isfinite(z["whitening"]).all()


def test_an_unwritable_cache_warns_and_goes_on(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("a file where the cache folder should be")
  out = preprocess.gcn_zca(images(20, (4, 4, 3)), images(4, (4, 4, 3)), blocker / "zca.npz")
  assert out[0].shape == (20, 4, 4, 3) and "cannot write the ZCA cache" in capsys.readouterr().err


def lcn_reference(x):
  """pylearn2's lecun_lcn (kernel 7, sigma 2, threshold 1e-4), one channel at a time, in numpy."""
  i = np.arange(7) - 3
  g = np.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 8.0)
  g /= g.sum()
  n, h, w, c = x.shape

  def blur(y):  # zero-padded 'same' correlation (the kernel is symmetric, so also convolution)
    p = np.pad(y, ((0, 0), (3, 3), (3, 3), (0, 0)))
    return sum(g[a, b] * p[:, a:a + h, b:b + w] for a in range(7) for b in range(7))

  centred = x - blur(x)
  local = np.sqrt(blur(x ** 2))
  divisor = np.maximum(np.maximum(local.mean(axis=(1, 2), keepdims=True), local), 1e-4)
  return centred / divisor


def test_lcn_matches_pylearn2_on_every_channel():
  x = preprocess.gcn(images(5, (9, 11, 3)), 1.0).astype(np.float64)
  x[..., 1] *= 3  # channels of different contrast are normalized separately
  out = preprocess.lcn(x)
  assert out.dtype == np.float32 and out.shape == x.shape
  np.testing.assert_allclose(out, lcn_reference(x), atol=1e-5)
  ratio = out[..., 1].std() / out[..., 0].std()
  assert 0.5 < ratio < 2


def test_standardize_keeps_uint8_and_uses_training_statistics():
  train, evaluated = images(8), images(3, seed=1)
  tx, ex, mean, std = preprocess.standardize(train, evaluated, Path("unused"))
  assert tx is train and ex is evaluated
  pixels = train.reshape(-1, 3) / 255.0
  np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-6)
  np.testing.assert_allclose(std, pixels.std(0), rtol=1e-6)
  np.testing.assert_allclose(normalize(jnp.asarray(train), mean, std),
                             (train / 255.0 - mean) / std, rtol=1e-5, atol=1e-5)
