"""Class maps of a whole split: the model's own aux maps, for both placements, batched and upsampled."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax.analysis import class_maps as cm
from gap_jax.analysis.class_maps import check_has_maps, class_maps, upsample
from gap_jax.data.augment import normalize
from gap_jax.errors import UserError
from gap_jax.models import MODELS

BLOCKS = (((6, 5), (4, 1)), ((6, 3), (4, 1)), ((6, 3),))  # a small NiN: 12x12 -> 6 -> 3


def fake_trained(placement: str, head: str = "gap", n: int = 37):
  model = MODELS["nin_mnist"](num_classes=5, blocks=BLOCKS, head=head, head_placement=placement,
                              kernel_init="lecun_normal", final_relu=False)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, 12, 12, 1)).astype(np.uint8)
  mean, std = np.array([0.5], np.float32), np.array([0.25], np.float32)
  # Random parameters from numpy: compiling the model's initializers would cost more than the test.
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 12, 12, 1)))["params"]
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), jnp.float32), shapes)
  data = types.SimpleNamespace(test=types.SimpleNamespace(images=images), mean=mean, std=std,
                               image_shape=(12, 12, 1))
  return types.SimpleNamespace(model=model, data=data, state=types.SimpleNamespace(params=params))


@pytest.mark.parametrize("placement", ["classify_then_pool", "pool_then_classify"])
def test_maps_are_the_models_aux_maps_for_every_image(placement):
  trained = fake_trained(placement)
  logits, maps = class_maps(trained, batch_size=16)  # 37 images: the last batch is partial
  x = normalize(jnp.asarray(trained.data.test.images), trained.data.mean, trained.data.std)
  want_logits, aux = jax.jit(trained.model.apply)({"params": trained.state.params}, x)
  assert maps.shape == (37, 3, 3, 5)
  np.testing.assert_allclose(maps, aux["class_maps"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(maps.mean((1, 2)), logits, rtol=1e-4, atol=1e-4)  # gap: logit = map mean
  if placement == "pool_then_classify":
    return  # upsampling is placement-blind: checked once
  _, up = class_maps(trained, trained.data.test.images[:5], upsampled=True)
  assert up.shape == (5, 12, 12, 5)
  np.testing.assert_allclose(up, upsample(jnp.asarray(maps[:5]), (12, 12)), rtol=1e-5, atol=1e-5)


def test_upsampling_keeps_a_constant_map_and_the_mean():
  maps = jnp.asarray(np.random.default_rng(0).random((2, 4, 4, 3)), jnp.float32)
  up = upsample(maps, (16, 16))
  np.testing.assert_allclose(upsample(jnp.ones((1, 4, 4, 1)), (16, 16)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(up.mean((1, 2)), maps.mean((1, 2)), rtol=0.05)


def test_a_model_without_class_maps_is_a_clear_error():
  trained = fake_trained("pool_then_classify", head="fc")
  with pytest.raises(UserError, match="makes no class maps"):
    check_has_maps(trained.model, (12, 12, 1))


def test_an_equal_model_with_other_normalisation_reuses_the_program_and_gets_its_own_maps(monkeypatch):
  """The class-map program is shared by equal models (a sweep's seeds, a trained network and its untrained
  baseline), with the data's mean and std as arguments: another normalisation gives the maps it should."""
  first, second = fake_trained("classify_then_pool"), fake_trained("classify_then_pool")
  second.data.mean, second.data.std = np.array([0.1], np.float32), np.array([0.6], np.float32)
  monkeypatch.setattr(cm, "PROGRAMS", cm.Programs(kept=8))
  class_maps(first, batch_size=16)
  _, maps = class_maps(second, batch_size=16)
  assert len(cm.PROGRAMS) == 1
  x = normalize(jnp.asarray(second.data.test.images), second.data.mean, second.data.std)
  want = jax.jit(second.model.apply)({"params": second.state.params}, x)[1]["class_maps"]
  np.testing.assert_allclose(maps, want, rtol=1e-5, atol=1e-5)
