"""Analytic receptive fields against the input gradients / perturbation responses of real networks, and
the effective receptive field of a random linear stack against the analytic one."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax import lax

from gap_jax.analysis.receptive_field import (
    LayerSpec, class_map_specs, effective_receptive_field, gaussian_width, receptive_fields)
from gap_jax.models import MODELS
from gap_jax.models.nin import CIFAR10_BLOCKS, MNIST_BLOCKS


def stack_apply(specs, kernels, x_BHWC):
  """Convolutions ("conv*") and sum-pools (others) as `specs` describe them, no nonlinearity."""
  for spec, kernel in zip(specs, kernels):
    pad = spec.padding if spec.padding == "SAME" else [(spec.padding, spec.padding)] * 2
    if spec.name.startswith("conv"):
      x_BHWC = lax.conv_general_dilated(x_BHWC, kernel, (spec.stride,) * 2, pad,
                                        rhs_dilation=(spec.dilation,) * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      window_pad = pad if pad == "SAME" else [(0, 0), *pad, (0, 0)]
      x_BHWC = lax.reduce_window(x_BHWC, 0.0, lax.add, (1, spec.kernel, spec.kernel, 1),
                                 (1, spec.stride, spec.stride, 1), window_pad,
                                 window_dilation=(1, spec.dilation, spec.dilation, 1))
  return x_BHWC


def random_stack(rng: np.random.Generator) -> list[LayerSpec]:
  specs = []
  for i in range(rng.integers(2, 6)):
    if rng.random() < 0.7:
      k = int(rng.choice([1, 2, 3, 5]))
      pad = "SAME" if rng.random() < 0.2 else int(rng.integers(0, k))
      stride, dilation = int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2, 3]))
      specs.append(LayerSpec(f"conv{i}", k, stride, pad, dilation))
    else:
      pad = "SAME" if rng.random() < 0.5 else int(rng.integers(0, 2))
      specs.append(LayerSpec(f"pool{i}", int(rng.choice([2, 3])), 2, pad))
  return specs


@pytest.mark.parametrize("seed", range(8))
def test_analytic_field_is_the_extent_of_the_input_gradient(seed):
  """All-positive weights, no ReLU: the gradient of a unit is non-zero exactly where a path reaches it,
  so its first and last non-zero input pixel bound the receptive field (dilations leave holes inside)."""
  rng = np.random.default_rng(seed)
  specs = random_stack(rng)
  r, s = receptive_fields(specs, 1000)[-1].size, receptive_fields(specs, 1000)[-1].stride
  n = r + 3 * s + 8
  field = receptive_fields(specs, n)[-1]
  kernels = [jnp.asarray(rng.uniform(0.5, 1.5, (sp.kernel, sp.kernel, 1, 1)), jnp.float32) for sp in specs]
  out = stack_apply(specs, kernels, jnp.zeros((1, n, n, 1)))
  assert out.shape[1] == field.out_size, (specs, out.shape)
  inside = [y for y in range(field.out_size) if field.interval(y)[0] >= 0 and field.interval(y)[1] < n]
  assert inside, specs
  for y in {inside[0], inside[len(inside) // 2], inside[-1]}:
    x = inside[-1 - inside.index(y)]  # a different unit along the other axis
    grad = jax.grad(lambda v: stack_apply(specs, kernels, v)[0, y, x, 0])(jnp.zeros((1, n, n, 1)))[0, ..., 0]
    rows, cols = np.nonzero(np.asarray(grad) > 0)
    assert (rows.min(), rows.max()) == field.interval(y), (specs, y)
    assert (cols.min(), cols.max()) == field.interval(x), (specs, x)
    assert rows.max() - rows.min() + 1 == field.size


def config_for(model: str, placement: str = "classify_then_pool", **model_args):
  return ml_collections.ConfigDict(
      {"model": model, "head_placement": placement, "model_args": {model: model_args}})


def test_nin_class_maps_have_the_papers_27_px_and_the_mnist_variant_35():
  fields = receptive_fields(class_map_specs(config_for("nin")), 32)
  assert [f.size for f in fields if "conv1" in f.name or "pool" in f.name] == [5, 7, 15, 19, 27]
  assert fields[-1].size == 27 and fields[-1].stride == 4 and fields[-1].out_size == 8
  # MNIST variant: 5 -> 7 (pool) -> 15 (5x5 at stride 2) -> 19 (pool) -> 35 (5x5 at stride 4).
  mnist = receptive_fields(class_map_specs(config_for("nin_mnist")), 28)[-1]
  assert (mnist.size, mnist.stride, mnist.padding, mnist.out_size) == (35, 4, 14, 7)


def narrow(blocks):
  """The same kernels, 4 channels per layer: the geometry is the model's, the cost is not."""
  return tuple(tuple((4, k) for _, k in block) for block in blocks)


def positive_params(model, x):
  """Kernels uniform in [0.01, 0.1], biases 0: every unit is a positive, monotone function of the inputs
  it sees. (Shapes from eval_shape: compiling the random initializers costs more than the test.)"""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  rng = np.random.default_rng(0)
  def fill(path, s):
    if path[-1].key == "bias":
      return jnp.zeros(s.shape)
    return jnp.asarray(rng.uniform(0.01, 0.1, s.shape), jnp.float32)
  return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.mark.parametrize("name,size,channels,placement", [
    ("nin", 32, 3, "classify_then_pool"),
    ("nin_mnist", 28, 1, "classify_then_pool"),
    ("nin_mnist", 44, 1, "pool_then_classify"),  # large enough that central units are not clipped
    ("cnn", 24, 3, "classify_then_pool"),
])
def test_shipped_models_see_exactly_their_analytic_fields(name, size, channels, placement):
  """The real model (its Conv, max_pool_ceil and map layers) with positive weights on a zero image: a
  class-map unit turns positive iff a perturbed input row (or column) lies in its field."""
  blocks = {"nin": CIFAR10_BLOCKS, "nin_mnist": MNIST_BLOCKS}.get(name)
  model_args = {} if blocks is None else {"blocks": narrow(blocks)}
  model = MODELS[name](num_classes=3, head_placement=placement, **model_args)
  params = positive_params(model, jnp.zeros((1, size, size, channels)))
  field = receptive_fields(class_map_specs(config_for(name, placement, **model_args)), size)[-1]
  rows = jnp.zeros((size, size, size, channels)).at[jnp.arange(size), jnp.arange(size)].set(1.0)
  maps_of = jax.jit(lambda x: model.apply({"params": params}, x)[1]["class_maps"][..., 0])
  hits = np.asarray(maps_of(jnp.concatenate([rows, rows.transpose(0, 2, 1, 3)])) > 0)
  hit_by_row, hit_by_col = hits[:size], hits[size:]  # (perturbed row or column, unit y, unit x)
  assert hit_by_row.shape[1] == field.out_size
  for y in range(field.out_size):
    lo, hi = field.interval(y, clip_to=size)
    expected = (np.arange(size) >= lo) & (np.arange(size) <= hi)
    np.testing.assert_array_equal(hit_by_row[:, y, :].all(1), expected, err_msg=f"unit row {y}")
    np.testing.assert_array_equal(hit_by_col[:, :, y].all(1), expected, err_msg=f"unit column {y}")
  if name == "nin_mnist" and size == 44:
    assert field.interval(5) == (6, 40) and field.size == 35  # unclipped: the full 35 px are seen


def test_effective_field_of_a_random_linear_stack_is_centred_inside_the_analytic_one():
  """Luo et al.: an untrained deep linear stack's effective field is a centred blob within (and much
  smaller than) the theoretical one."""
  specs = [LayerSpec(f"conv{i}", 3, 1, 1) for i in range(8)]
  n, c = 33, 4
  field = receptive_fields(specs, n)[-1]
  centre = (16, 16)

  def maps_fn(kernels, x_BHWC):
    for kernel in kernels:
      x_BHWC = lax.conv_general_dilated(x_BHWC, kernel, (1, 1), [(1, 1)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return x_BHWC

  rng = np.random.default_rng(0)
  seeds = [[jnp.asarray(rng.normal(0, 1 / 3, (3, 3, c, c)), jnp.float32) for _ in specs] for _ in range(6)]
  x = jnp.asarray(rng.normal(size=(4, n, n, c)), jnp.float32)
  erf = effective_receptive_field(maps_fn, seeds, x, centre, mass=0.95,
                                  centre=(field.centre(16), field.centre(16)))
  assert np.allclose(erf.centre_of_mass, (16, 16), atol=0.75), erf.centre_of_mass
  lo, hi = field.interval(16)
  outside = np.ones((n, n), bool)
  outside[lo:hi + 1, lo:hi + 1] = False
  assert erf.erf_HW[outside].max() == 0 and erf.erf_HW.sum() == pytest.approx(1.0)
  assert erf.size is not None and erf.size < field.size == 17
  assert erf.zero_gradient_fraction == 0


@pytest.mark.parametrize("layers", [1, 4, 9])
def test_gaussian_width_of_stacked_box_filters_is_the_square_root_of_depth(layers):
  """n stacked 3x3 box filters: each adds variance 2/3 per axis (uniform on -1, 0, 1), so the field's width
  is sqrt(2 n / 3) exactly, the square-root growth Luo et al. describe."""
  box = np.ones(3) / 3
  line = np.ones(1)
  for _ in range(layers):
    line = np.convolve(line, box)
  field = np.outer(line, line)
  c = (len(line) - 1) / 2
  assert gaussian_width(np.pad(field, 5), (c + 5, c + 5)) == pytest.approx(np.sqrt(2 * layers / 3))
  assert np.isnan(gaussian_width(np.zeros((5, 5)), (2, 2)))
