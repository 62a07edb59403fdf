import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax.models import MODELS
from gap_jax.models.output import PLACEMENTS

SHAPES = {"nin": (32, 32, 3), "nin_mnist": (28, 28, 1), "nin_svhn": (32, 32, 3), "cnn": (32, 32, 3),
          "rfnet": (16, 16, 1)}
MAP_SIZES = {"nin": 8, "nin_mnist": 7, "nin_svhn": 8, "cnn": 8, "rfnet": 16}


def count(params):
  return sum(x.size for x in jax.tree.leaves(params))


def init(model, shape, batch=2, seed=0):
  x = jax.random.normal(jax.random.key(seed), (batch, *shape))
  return model.init(jax.random.key(1), x)["params"], x


def abstract(model, shape, batch=2):
  """Parameters and outputs as shapes only (jax.eval_shape): what a shape or count test needs, without
  computing a convolution."""
  x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.key(1), x)["params"]
  return params, jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, x)


def test_nin_cifar10_has_the_papers_parameter_count():
  params, _ = abstract(MODELS["nin"](num_classes=10), SHAPES["nin"])
  assert count(params) == 966_986


def test_nin_parameter_count_matches_layer_arithmetic():
  """Independent count from the layer table: kernel k*k*in*out + out biases per layer."""
  def expected(blocks, c_in, k):
    total = 0
    for block in blocks:
      for features, size in block:
        total += size * size * c_in * features + features
        c_in = features
    return total + c_in * k + k
  from gap_jax.models.nin import MNIST_BLOCKS, SVHN_BLOCKS
  for name, blocks, c_in in (("nin_mnist", MNIST_BLOCKS, 1), ("nin_svhn", SVHN_BLOCKS, 3)):
    params, _ = abstract(MODELS[name](num_classes=7), SHAPES[name])
    assert count(params) == expected(blocks, c_in, 7)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("head", ["gap", "gmp", "fc"])
def test_output_shapes_and_aux(name, placement, head):
  model = MODELS[name](num_classes=5, head=head, head_placement=placement)
  _, (logits, aux) = abstract(model, SHAPES[name], batch=3)
  s = MAP_SIZES[name]
  assert logits.shape == (3, 5)
  assert aux["features"].shape[:3] == (3, s, s)
  if placement == "classify_then_pool" or head != "fc":
    assert aux["class_maps"].shape == (3, s, s, 5)
  else:
    assert "class_maps" not in aux  # a flattening head has no class activation map


@pytest.mark.parametrize("name", ["nin", "nin_mnist"])
def test_classify_then_pool_gap_logits_are_exact_map_means(name):
  model = MODELS[name](num_classes=10, head="gap", kernel_init="lecun_normal")
  params, x = init(model, (12, 12, SHAPES[name][-1]), batch=4)  # 3x3 maps: the identity holds at any size
  logits, aux = model.apply({"params": params}, x)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(aux["class_maps"].mean(axis=(1, 2))))


def test_classify_then_pool_gmp_logits_are_map_maxima():
  model = MODELS["nin_mnist"](num_classes=10, head="gmp", kernel_init="lecun_normal")
  params, x = init(model, SHAPES["nin_mnist"], batch=4)
  logits, aux = model.apply({"params": params}, x)
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(aux["class_maps"].max(axis=(1, 2))))


def test_pool_then_classify_gap_logits_are_cam_means():
  """Zhou et al.'s identity: with gap, the logit is the spatial mean of the class activation map."""
  model = MODELS["nin_mnist"](num_classes=10, head="gap", head_placement="pool_then_classify",
                              kernel_init="lecun_normal")
  params, x = init(model, SHAPES["nin_mnist"], batch=4)
  logits, aux = model.apply({"params": params}, x)
  np.testing.assert_allclose(logits, aux["class_maps"].mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
  w = params["output"]["classifier"]["kernel"]
  cam = np.einsum("bhwc,ck->bhwk", np.asarray(aux["features"], np.float64), np.asarray(w, np.float64))
  np.testing.assert_allclose(aux["class_maps"], cam + np.asarray(params["output"]["classifier"]["bias"]),
                             rtol=1e-4, atol=1e-5)


def test_dropout_only_in_training():
  model = MODELS["nin_mnist"](num_classes=10, kernel_init="lecun_normal")
  params, x = init(model, SHAPES["nin_mnist"])
  a, _ = model.apply({"params": params}, x)
  b, _ = model.apply({"params": params}, x)
  c, _ = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(3)})
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_mnist_variant_maps_are_7x7_and_pooling_is_ceil_mode():
  _, (_, aux) = abstract(MODELS["nin_mnist"](num_classes=10), (28, 28, 1))
  assert aux["class_maps"].shape[1:3] == (7, 7)
  _, (_, aux) = abstract(MODELS["nin"](num_classes=10), (31, 31, 3))  # ceil(31/2) = 16, ceil(16/2) = 8
  assert aux["class_maps"].shape[1:3] == (8, 8)


def test_bfloat16_compute_keeps_float32_parameters_and_close_logits():
  f32 = MODELS["nin_mnist"](num_classes=10, kernel_init="lecun_normal", final_relu=False)
  bf16 = MODELS["nin_mnist"](num_classes=10, kernel_init="lecun_normal", final_relu=False,
                             dtype=jnp.bfloat16)
  params, x = init(bf16, SHAPES["nin_mnist"], batch=4)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  lo16, aux = bf16.apply({"params": params}, x)
  lo32, _ = f32.apply({"params": params}, x)
  assert aux["class_maps"].dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(lo16, np.float32), lo32, rtol=0.05, atol=0.05 * np.abs(lo32).max())


def rfnet_centre_gradient(size: int, **rfnet_args) -> np.ndarray:
  """d class map[centre] / d input of a 4 x 32 RFNet with positive weights on an all-ones image (no ReLU
  zeros), after checking that its parameter count does not move with the dilations."""
  model = MODELS["rfnet"](num_classes=3, final_relu=False, **rfnet_args)
  params, _ = init(model, (size, size, 1))
  assert count(params) == (9 * 1 * 32 + 32) + 3 * (9 * 32 * 32 + 32) + (32 * 3 + 3)
  positive = jax.tree.map(lambda w: jnp.abs(w) + 0.01, params)
  c = size // 2
  unit = lambda x: model.apply({"params": positive}, x)[1]["class_maps"][0, c, c, 0]
  return np.asarray(jax.grad(unit)(jnp.ones((1, size, size, 1)))[0, :, :, 0])


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_rfnet_receptive_field_is_the_dial_and_parameters_do_not_move(dilation):
  """With positive weights and no ReLU zeros, the input pixels one class-map unit depends on span
  exactly the analytic receptive field 1 + depth (k - 1) dilation."""
  from gap_jax.models.rfnet import receptive_field
  grad = rfnet_centre_gradient(33, dilation=dilation)
  rows, cols = np.nonzero(grad)
  assert rows.max() - rows.min() + 1 == receptive_field(4, 3, dilation)
  assert cols.max() - cols.min() + 1 == receptive_field(4, 3, dilation)


@pytest.mark.parametrize("dilations", [(2, 2, 2, 2), (1, 2, 3, 4)])
def test_rfnet_mixed_dilations_reach_every_pixel_of_the_field_and_one_rate_leaves_a_lattice(dilations):
  """The pixels one unit depends on (positive weights, no ReLU zeros) are exactly where the 1-D footprint
  (paths through the dilated kernels) is non-zero along each axis: with one rate 2 every other pixel (the
  gridding lattice), with mixed rates every pixel of the 1 + 2 * sum(rates) field. Parameters do not move."""
  from gap_jax.models.rfnet import footprint, gridded, receptive_field
  grad = rfnet_centre_gradient(41, dilations=dilations)
  rf = receptive_field(4, 3, dilations=dilations)
  half = (rf - 1) // 2
  reached = footprint(3, dilations) > 0
  assert len(reached) == rf
  np.testing.assert_array_equal(grad[20 - half:21 + half, 20 - half:21 + half] != 0, np.outer(reached, reached))
  assert (grad != 0).sum() == np.outer(reached, reached).sum()  # nothing outside the field
  assert gridded(3, dilations) == (dilations == (2, 2, 2, 2))


def test_rfnet_refuses_an_even_kernel():
  from gap_jax.errors import UserError
  with pytest.raises(UserError, match="rfnet kernel=4: use an odd kernel"):
    MODELS["rfnet"](num_classes=3, kernel=4)


def test_circular_padding_makes_maps_equivariant_to_cyclic_shifts_and_zeros_do_not():
  """On a torus there is no border: shifting the image cyclically shifts every map of a convolution stack
  by the same amount. Zero padding leaks position at the border, so it is not equivariant."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
  shifted = jnp.roll(x, (3, 5), axis=(1, 2))
  for padding, equivariant in (("circular", True), ("zeros", False)):
    model = MODELS["rfnet"](num_classes=3, padding=padding, final_relu=False, dilation=2)
    params = model.init(jax.random.key(1), x)["params"]
    maps = lambda x: model.apply({"params": params}, x)[1]["class_maps"]
    assert np.allclose(jnp.roll(maps(x), (3, 5), axis=(1, 2)), maps(shifted), atol=1e-4) == equivariant


@pytest.mark.parametrize("name", ["nin_mnist", "cnn"])
def test_pooled_models_take_circular_padding(name):
  """Their convolutions (and the CNN's local layer) wrap; the maps keep their size; the result differs
  from zero padding only near the border."""
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 1))
  out = {}
  for padding in ("circular", "zeros"):
    model = MODELS[name](num_classes=3, padding=padding)
    params = model.init(jax.random.key(1), x)["params"]
    out[padding] = model.apply({"params": params}, x)[1]["class_maps"]
  assert out["circular"].shape == out["zeros"].shape == (2, 4, 4, 3)
  assert not np.allclose(out["circular"], out["zeros"])


def test_valid_padding_shrinks_the_maps_by_the_kernels_span():
  _, (_, aux) = abstract(MODELS["rfnet"](num_classes=3, padding="valid", depth=3, dilation=2), (16, 16, 1))
  assert aux["class_maps"].shape[1:3] == (16 - 3 * 2 * 2, 16 - 3 * 2 * 2)  # depth * dilation * (k - 1)


def test_an_unknown_padding_is_refused():
  from gap_jax.errors import UserError
  with pytest.raises(UserError, match="unknown padding 'reflect': choose one of"):
    abstract(MODELS["rfnet"](num_classes=3, padding="reflect"), (8, 8, 1))
