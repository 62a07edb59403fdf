"""Every pooling head against its defining formula (plain numpy, float64), its limits and identities,
permutation invariance, finite gradients, config-time refusals, and one short real training run each.
The formulas are those of the README's "Heads" table, written out plainly here.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gap_jax.configs import default
from gap_jax.errors import UserError
from gap_jax.heads import HEADS, make_head
from gap_jax.models import MODELS, build_model

SMALL = {"map": {"num_heads": 2}, "attention_mil": {"embed_dim": 16, "attention_dim": 8}}  # for 6 channels
B, H, W, C = 3, 5, 4, 6  # H != W so that a mix-up of the two axes shows
N = H * W


def random_maps(seed=0, shape=(B, H, W, C), low=-2.0, high=2.0):
  return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def init_head(name, x, **args):
  """(head, variables): head `name` with its defaults updated by `args`, initialised on x."""
  head = make_head(name, {**SMALL.get(name, {}), **args})
  return head, head.init(jax.random.key(0), jnp.asarray(x))


def run_head(name, x, **args):
  """(output, params) of head `name` on x."""
  head, variables = init_head(name, x, **args)
  return np.asarray(head.apply(variables, jnp.asarray(x))), variables.get("params", {})


# ---- The formulas, in numpy: x is (B, H, W, C), the result (B, D). ----

def np_tokens(x):
  return np.asarray(x, np.float64).reshape(x.shape[0], -1, x.shape[-1])


def np_gap(x):
  return np_tokens(x).mean(axis=1)


def np_gmp(x):
  return np_tokens(x).max(axis=1)


def np_lse(x, r):
  return np.log(np.mean(np.exp(r * np_tokens(x)), axis=1)) / r  # the definition, not the stable form


def np_gem(x, p, eps=1e-6):
  return np.mean(np.maximum(np_tokens(x), eps) ** p, axis=1) ** (1 / p)


def np_topk(x, k_max, k_min, alpha):
  """durandtibo/wildcat.pytorch's WildcatPool2dFunction.forward, written out."""
  t = np_tokens(x)
  n = t.shape[1]
  count = lambda k: 0 if k <= 0 else round(k * n) if k < 1 else min(int(k), n)
  kmax, kmin = count(k_max), count(k_min)
  descending = -np.sort(-t, axis=1)
  out = descending[:, :kmax].sum(axis=1) / kmax
  if kmin > 0 and alpha != 0:
    out = (out + descending[:, n - kmin:].sum(axis=1) * alpha / kmin) / 2
  return out


def np_gwrp(x, d):
  descending = -np.sort(-np_tokens(x), axis=1)
  weights = np.array([d ** j for j in range(descending.shape[1])])  # d^(j-1), j = 1..N
  return np.einsum("bnc,n->bc", descending, weights / weights.sum())


def np_avgmax(x):
  return 0.5 * (np_gap(x) + np_gmp(x))


def np_catavgmax(x):
  return np.concatenate([np_gap(x), np_gmp(x)], axis=-1)


def np_softmax(s, axis):
  e = np.exp(s - s.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def np_dense(x, p):
  return x @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def np_map(x, params, num_heads):
  """big_vision's MAPHead: one probe query attends to the tokens, then x + MLP(LayerNorm(x))."""
  t = np_tokens(x)
  f = lambda a: np.asarray(a, np.float64)
  att = params["attention"]
  proj = lambda z, name: np.einsum("bnc,chd->bnhd", z, f(att[name]["kernel"])) + f(att[name]["bias"])
  probe = np.broadcast_to(f(params["probe"]), (t.shape[0], 1, t.shape[-1]))
  q, k, v = proj(probe, "query"), proj(t, "key"), proj(t, "value")
  weights = np_softmax(np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1]), axis=-1)
  o = np.einsum("bhqk,bkhd->bqhd", weights, v)
  y = np.einsum("bqhd,hdc->bqc", o, f(att["out"]["kernel"])) + f(att["out"]["bias"])
  mean, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
  z = (y - mean) / np.sqrt(var + 1e-6) * f(params["norm"]["scale"]) + f(params["norm"]["bias"])
  z = np_dense(z, params["mlp_hidden"])
  z = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))  # tanh-approximate GELU
  return (y + np_dense(z, params["mlp_out"]))[:, 0]


def np_attention_mil(x, params):
  """Ilse et al. 2018, gated: a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k))), z = sum_k a_k h_k."""
  h = np_tokens(x)
  if "embed" in params:
    h = np.maximum(np_dense(h, params["embed"]), 0)
  gate = np.tanh(np_dense(h, params["V"])) * (1 / (1 + np.exp(-np_dense(h, params["U"]))))
  a = np_softmax(np_dense(gate, params["w"])[..., 0], axis=1)
  return np.einsum("bn,bnl->bl", a, h)


# ---- Numerics against the formulas. ----

@pytest.mark.parametrize("name,args,reference", [
    ("gap", {}, np_gap),
    ("gmp", {}, np_gmp),
    ("avgmax", {}, np_avgmax),
    ("catavgmax", {}, np_catavgmax),
    ("fc", {}, lambda x: np.asarray(x, np.float64).reshape(x.shape[0], -1)),
    ("lse", {"r": 10.0}, lambda x: np_lse(x, 10.0)),
    ("lse", {"r": 0.3}, lambda x: np_lse(x, 0.3)),
    ("lse", {"r": 4.0, "learn_r": True}, lambda x: np_lse(x, 4.0)),
    ("gem", {}, lambda x: np_gem(x, 3.0)),
    ("gem", {"p": 1.7, "eps": 0.1}, lambda x: np_gem(x, 1.7, 0.1)),
    ("gem", {"p": 6.0, "learn_p": False}, lambda x: np_gem(x, 6.0)),
    ("topk", {}, lambda x: np_topk(x, 0.2, 0.2, 0.7)),  # 4 of 20 each side, halved
    ("topk", {"k_max": 3, "k_min": 0}, lambda x: np_topk(x, 3, 0, 0.7)),
    ("topk", {"k_max": 5, "k_min": 2, "alpha": 0.0}, lambda x: np_topk(x, 5, 2, 0.0)),  # alpha 0: no /2
    ("topk", {"k_max": 0.5, "k_min": 7, "alpha": -1.3}, lambda x: np_topk(x, 0.5, 7, -1.3)),
    ("topk", {"k_max": 0.13, "k_min": 0.125}, lambda x: np_topk(x, 0.13, 0.125, 0.7)),  # round 2.6, 2.5
    ("gwrp", {}, lambda x: np_gwrp(x, 0.996)),
    ("gwrp", {"decay": 0.7}, lambda x: np_gwrp(x, 0.7)),
])
def test_head_matches_its_formula(name, args, reference):
  x = random_maps()
  out, _ = run_head(name, x, **args)
  np.testing.assert_allclose(out, reference(x), rtol=1e-5, atol=1e-6)


def test_gem_uses_its_learned_p():
  x = random_maps(low=0.0)
  head, variables = init_head("gem", x)
  assert float(variables["params"]["p"]) == 3.0
  out = head.apply({"params": {"p": jnp.float32(1.5)}}, x)
  np.testing.assert_allclose(out, np_gem(x, 1.5), rtol=1e-5)


def test_lse_uses_its_learned_r():
  x = random_maps()
  head, variables = init_head("lse", x, learn_r=True)
  assert float(variables["params"]["r"]) == 10.0
  np.testing.assert_allclose(head.apply({"params": {"r": jnp.float32(2.5)}}, x), np_lse(x, 2.5), rtol=1e-5)


@pytest.mark.parametrize("embed_dim", [0, 16])
def test_attention_mil_matches_its_formula(embed_dim):
  x = random_maps(1)
  out, params = run_head("attention_mil", x, embed_dim=embed_dim)
  assert out.shape == (B, embed_dim or C)
  np.testing.assert_allclose(out, np_attention_mil(x, params), rtol=1e-4, atol=1e-5)


def test_attention_mil_weights_are_a_softmax_over_locations():
  x = random_maps(2)
  head, variables = init_head("attention_mil", x)
  _, inter = head.apply(variables, x, mutable=["intermediates"])
  a_BHW = np.asarray(inter["intermediates"]["attention_BHW"][0])
  assert a_BHW.shape == (B, H, W) and np.all(a_BHW > 0)
  np.testing.assert_allclose(a_BHW.sum(axis=(1, 2)), 1.0, rtol=1e-5)


@pytest.mark.parametrize("num_heads,mlp_dim", [(2, None), (3, 5)])
def test_map_matches_big_visions_map_head(num_heads, mlp_dim):
  x = random_maps(3)
  out, params = run_head("map", x, num_heads=num_heads, mlp_dim=mlp_dim)
  assert params["mlp_hidden"]["kernel"].shape == (C, mlp_dim or 4 * C)
  np.testing.assert_allclose(out, np_map(x, params, num_heads), rtol=1e-4, atol=1e-5)


# ---- Limits and identities. ----

def test_gem_with_p_1_is_gap_on_non_negative_maps():
  x = random_maps(low=0.0)
  x[0, 0, 0, 0] = 0.0  # clamped to eps = 1e-6: off by at most eps / N
  out, _ = run_head("gem", x, p=1.0)
  np.testing.assert_allclose(out, np_gap(x), rtol=1e-5, atol=1e-6)


def test_lse_goes_from_gap_to_gmp_as_r_grows():
  x = random_maps()
  small, _ = run_head("lse", x, r=1e-4)
  np.testing.assert_allclose(small, np_gap(x), rtol=0, atol=1e-4)  # lse - mean ~ r var / 2
  large, _ = run_head("lse", x, r=1e4)
  assert np.all(large <= np_gmp(x) + 1e-6)
  np.testing.assert_allclose(large, np_gmp(x), rtol=0, atol=math.log(N) / 1e4 + 1e-6)  # within log(N)/r


def test_topk_with_all_locations_and_no_minimum_is_gap():
  x = random_maps()
  out, _ = run_head("topk", x, k_max=N, k_min=0)
  np.testing.assert_allclose(out, np_gap(x), rtol=1e-5, atol=1e-6)
  out, _ = run_head("topk", x, k_max=1, k_min=0)
  np.testing.assert_array_equal(out, np_gmp(x).astype(np.float32))


def test_gwrp_decay_1_is_gap_and_decay_0_is_gmp():
  x = random_maps()
  out, _ = run_head("gwrp", x, decay=1.0)
  np.testing.assert_allclose(out, np_gap(x), rtol=1e-5, atol=1e-6)
  out, _ = run_head("gwrp", x, decay=0.0)
  np.testing.assert_array_equal(out, np_gmp(x).astype(np.float32))


def test_avgmax_is_the_mean_of_gap_and_gmp():
  x = random_maps()
  gap, gmp = run_head("gap", x)[0], run_head("gmp", x)[0]
  np.testing.assert_allclose(run_head("avgmax", x)[0], (gap + gmp) / 2, rtol=1e-6)
  np.testing.assert_allclose(run_head("catavgmax", x)[0], np.concatenate([gap, gmp], -1), rtol=1e-6)


# ---- Permutation invariance. ----

@pytest.mark.parametrize("name", sorted(HEADS))
def test_only_fc_depends_on_where_values_are(name):
  x = random_maps(4)
  perm = np.random.default_rng(5).permutation(N)
  x_perm = x.reshape(B, N, C)[:, perm].reshape(B, H, W, C)
  head, variables = init_head(name, x)
  a, b = head.apply(variables, x), head.apply(variables, x_perm)
  if name == "fc":
    assert not np.allclose(a, b)
  else:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- Gradients. ----

def finite_grads(name, x, **args):
  head, variables = init_head(name, x, **args)
  params = variables.get("params", {})
  loss = lambda params, x: jnp.sum(head.apply({"params": params}, x) ** 2)
  value, (g_params, g_x) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, jnp.asarray(x))
  leaves = [value, g_x, *jax.tree.leaves(g_params)]
  return all(bool(jnp.all(jnp.isfinite(g))) for g in leaves), g_x


@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradients_are_finite(name):
  ok, g_x = finite_grads(name, random_maps(6))
  assert ok and np.any(np.asarray(g_x) != 0)


@pytest.mark.parametrize("name,x,args", [
    ("lse", np.linspace(0, 50, B * N * C, dtype=np.float32).reshape(B, H, W, C), {"r": 1e3}),
    ("lse", np.linspace(0, 50, B * N * C, dtype=np.float32).reshape(B, H, W, C), {"r": 1e3, "learn_r": True}),
    ("lse", random_maps(7) * 1e4, {"r": 1e-6, "learn_r": True}),
    ("gem", random_maps(8, low=1e-6, high=1e-5), {"p": 10.0}),  # naive: (1e-5)^10 underflows -> nan
    ("gem", random_maps(9, low=-1e-3, high=1e-8), {}),  # all clamped to eps
    ("gem", np.zeros((B, H, W, C), np.float32), {"p": 30.0}),
])
def test_gradients_stay_finite_at_the_extremes(name, x, args):
  """The naive formulas give inf or nan here (exp(r x) overflows, x^p underflows)."""
  assert finite_grads(name, x, **args)[0]


def test_lse_and_gem_gradients_match_their_closed_forms():
  """d lse / dx_i = softmax(r x)_i; d gem / dx_i = (x_i / gem)^(p-1) / N above eps."""
  x = random_maps(10, low=0.1, high=3.0)
  for name, args, grad in [
      ("lse", {"r": 7.0}, lambda t: np_softmax(7.0 * t, axis=1)),
      ("gem", {"p": 3.0}, lambda t: (t / np_gem(x, 3.0)[:, None]) ** 2 / N)]:
    head, variables = init_head(name, x, **args)
    g = jax.grad(lambda x: head.apply(variables, x).sum())(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g).reshape(B, N, C), grad(np_tokens(x)), rtol=1e-4, atol=1e-7)


# ---- Config: placements, bad values, the command line. ----

def build(head, placement, **head_args):
  model = MODELS["nin_mnist"](num_classes=4, head=head, head_placement=placement,
                              head_args=head_args)
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 16, 16, 1), jnp.float32))


@pytest.mark.parametrize("name", ["catavgmax", "map", "attention_mil"])
def test_heads_that_cannot_pool_class_maps_are_refused_there(name):
  refused = f"head '{name}' cannot be placed classify_then_pool.*pool_then_classify"
  with pytest.raises(UserError, match=refused):
    build(name, "classify_then_pool")
  build(name, "pool_then_classify")


def test_refusal_comes_before_any_training(tmp_path, tiny_config):
  from gap_jax.train import train_and_evaluate
  tiny_config.head = "catavgmax"
  with pytest.raises(UserError, match="cannot be placed classify_then_pool"):
    train_and_evaluate(tiny_config, tmp_path / "run")
  assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("head,field,value,message", [
    ("lse", "r", 0.0, r"head_args.lse.r=0.0 must be positive \(set --config.head_args.lse.r=...\)"),
    ("gem", "p", -1.0, "head_args.gem.p=-1.0 must be positive"),
    ("topk", "k_max", 0.0, "head_args.topk.k_max=0.0 must be positive"),
    ("topk", "k_max", 0.01, "head_args.topk.k_max=0.01 selects no location of the 16"),  # round(0.01 * 16) = 0
    ("gwrp", "decay", 1.5, r"head_args.gwrp.decay=1.5 must be in \[0, 1\]"),
    ("fc", "dropout", 1.0, "head_args.fc.dropout=1.0"),
    ("map", "num_heads", 7, "head_args.map.num_heads=7 must divide the 96 feature channels"),
    ("attention_mil", "attention_dim", 0, "head_args.attention_mil.attention_dim=0 must be positive"),
    ("gem", "r", 5.0, "head_args.gem.r is not a field of head 'gem': gem takes p, eps, learn_p"),
    ("gap", "dropout", 0.5, "head_args.gap.dropout is not a field of head 'gap': gap takes no arguments"),
])
def test_bad_head_hyper_parameters_are_refused(head, field, value, message):
  with pytest.raises(UserError, match=message):
    build(head, "pool_then_classify", **{field: value})


def test_head_args_come_from_the_command_line(monkeypatch):
  """`--config.head_args.<head>.<field>=...` reaches the head (config_flags reads its overrides from sys.argv),
  and only the chosen head's section does."""
  from absl import flags
  from ml_collections import config_flags
  argv = ["prog", "--config=gap_jax/configs/default.py", "--config.head=map",
          "--config.head_placement=pool_then_classify", "--config.head_args.map.num_heads=4",
          "--config.head_args.map.mlp_dim=64"]
  monkeypatch.setattr("sys.argv", argv)
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=flag_values)
  flag_values(argv)
  model = build_model(flag_values.config, 10)
  assert model.head_args == {"num_heads": 4, "mlp_dim": 64}
  head = make_head("map", model.head_args)
  assert (head.num_heads, head.mlp_dim) == (4, 64)


def test_each_head_section_holds_exactly_the_heads_fields_and_defaults():
  """What a head built with no arguments has, field by field (None defaults included)."""
  head_args = default.get_config().head_args
  for name, cls in HEADS.items():
    fields = [f.name for f in dataclasses.fields(cls) if f.name not in ("parent", "name")]
    assert dict(head_args.get(name, {})) == {f: getattr(cls(), f) for f in fields}, name


# ---- One short real training run per head. ----

# Each head in the placement its source uses: lse, topk and gwrp pool class maps (Pinheiro & Collobert,
# WILDCAT, SEC); gem, catavgmax and the attention heads pool features. gem clamps at eps, so on class
# maps it behaves like the final ReLU: a class whose map goes negative everywhere gets no gradient and
# dies (2 of 4 classes within 60 steps here); on post-ReLU features it learns. gap: tests/test_train.py.
TRAINING_RUNS = [
    ("gmp", "classify_then_pool", {}),
    ("lse", "classify_then_pool", {}),
    ("topk", "classify_then_pool", {}),
    ("gwrp", "classify_then_pool", {}),
    ("avgmax", "classify_then_pool", {}),
    ("fc", "classify_then_pool", {}),
    ("fc", "pool_then_classify", {"dropout": 0.5}),
    ("gem", "pool_then_classify", {}),
    ("catavgmax", "pool_then_classify", {}),
    ("map", "pool_then_classify", {}),
    ("attention_mil", "pool_then_classify", {}),
]


@pytest.mark.slow  # ~15 s each on 2 idle CPU cores: deselect with -m "not slow"
@pytest.mark.parametrize("head,placement,args", TRAINING_RUNS)
def test_each_head_learns_the_synthetic_task(tmp_path, head, placement, args):
  from gap_jax.configs import synthetic
  from gap_jax.train import train_and_evaluate
  config = synthetic.get_config()  # 60 steps, 4 classes: chance is 25%
  config.head, config.head_placement = head, placement
  if args:
    config.head_args[head].update(args)
  config.eval_every_steps = config.num_train_steps  # one evaluation, at the end
  results = train_and_evaluate(config, tmp_path)
  assert results["final"]["test_accuracy"] > 0.6, results["final"]
