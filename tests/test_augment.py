import jax
import jax.numpy as jnp
import numpy as np

from gap_jax.data.augment import augment, random_crop, random_flip


def test_crop_without_shift_is_identity_and_shifts_are_translations():
  x = jax.random.normal(jax.random.key(0), (16, 8, 8, 2))
  out = random_crop(jax.random.key(1), x, 2)
  assert out.shape == x.shape
  xp = np.pad(np.asarray(x), ((0, 0), (2, 2), (2, 2), (0, 0)))
  for i in range(16):  # every crop is one of the 25 windows of the padded image
    assert any(np.array_equal(out[i], xp[i, a:a + 8, b:b + 8]) for a in range(5) for b in range(5))


def test_flip_is_a_mirror_or_nothing():
  x = jax.random.normal(jax.random.key(0), (32, 5, 5, 1))
  out = np.asarray(random_flip(jax.random.key(2), x))
  flipped = [np.array_equal(out[i], np.asarray(x[i, :, ::-1])) for i in range(32)]
  kept = [np.array_equal(out[i], np.asarray(x[i])) for i in range(32)]
  assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < 32


def test_augment_depends_only_on_key():
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  a = augment(jax.random.key(5), x, 2, True)
  b = augment(jax.random.key(5), x, 2, True)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(augment(jax.random.key(5), x, 0, False), x)
