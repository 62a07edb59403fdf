"""Heads that pool the H*W locations with learned attention weights: one weight per location, shared by
all channels, computed from every channel together.

That is why neither can pool class maps (classify_then_pool): the weights of one class's logit would
depend on the other classes' maps, and map's MLP mixes channels after pooling, so the output is no longer
one logit per map. Attention per class (one probe per class map) would be a different head. Both run
in pool_then_classify, where they expose no class activation map (their output is not linear in the
features); their attention weights are sown into the "intermediates" collection instead
(`model.apply(..., mutable=["intermediates"])`).
"""

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from gap_jax.heads.simple import check_arg

_NOT_FOR_CLASS_MAPS = ("its attention weights come from all channels at once, so it would not pool each "
                       "class map to its own logit")


class MultiheadAttentionPool(nn.Module):
  """map: multi-head attention from one learned query (the probe) to the H*W tokens, then
  x + MLP(LayerNorm(x)), as big_vision's MAPHead (inits included). No position embedding, so the
  result does not depend on where the tokens are. mlp_dim None: 4 * C."""

  num_heads: int = 8
  mlp_dim: int | None = None
  per_channel: ClassVar[bool] = False
  only_pool_then_classify: ClassVar[str] = _NOT_FOR_CLASS_MAPS

  def __post_init__(self):
    super().__post_init__()
    check_arg(self.num_heads > 0, "num_heads", self.num_heads, "must be positive")
    check_arg(self.mlp_dim is None or self.mlp_dim > 0, "mlp_dim", self.mlp_dim, "must be positive or None")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    b, h, w, c = x_BHWC.shape
    check_arg(c % self.num_heads == 0, "num_heads", self.num_heads,
              f"must divide the {c} feature channels the head pools")
    xavier = nn.initializers.xavier_uniform()
    probe_11C = self.param("probe", xavier, (1, 1, c), jnp.float32)
    x_BNC = x_BHWC.reshape(b, h * w, c)
    attention = nn.MultiHeadDotProductAttention(self.num_heads, kernel_init=xavier, name="attention")
    x_B1C = attention(jnp.broadcast_to(probe_11C, (b, 1, c)), x_BNC, sow_weights=True)
    mlp = dict(kernel_init=xavier, bias_init=nn.initializers.normal(stddev=1e-6))
    y_B1C = nn.LayerNorm(name="norm")(x_B1C)
    y_B1C = nn.Dense(self.mlp_dim or 4 * c, name="mlp_hidden", **mlp)(y_B1C)
    y_B1C = nn.Dense(c, name="mlp_out", **mlp)(nn.gelu(y_B1C))
    return (x_B1C + y_B1C)[:, 0]


class GatedAttentionMIL(nn.Module):
  """attention_mil (Ilse, Tomczak, Welling, ICML 2018, gated): each location is an instance h_k,
  a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k))), output z = sum_k a_k h_k.

  h_k = ReLU(E f_k) with E a learned embedding to `embed_dim` (the paper's L = 500) as in the paper's
  network, or the features f_k themselves when embed_dim = 0. `attention_dim` is the paper's D = 128.
  """

  embed_dim: int = 500
  attention_dim: int = 128
  per_channel: ClassVar[bool] = False
  only_pool_then_classify: ClassVar[str] = _NOT_FOR_CLASS_MAPS

  def __post_init__(self):
    super().__post_init__()
    check_arg(self.embed_dim >= 0, "embed_dim", self.embed_dim, "must not be negative (0: no embedding)")
    check_arg(self.attention_dim > 0, "attention_dim", self.attention_dim, "must be positive")

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    b, h, w, c = x_BHWC.shape
    h_BNL = x_BHWC.reshape(b, h * w, c)
    if self.embed_dim:
      h_BNL = nn.relu(nn.Dense(self.embed_dim, name="embed")(h_BNL))
    v_BND = jnp.tanh(nn.Dense(self.attention_dim, name="V")(h_BNL))
    u_BND = nn.sigmoid(nn.Dense(self.attention_dim, name="U")(h_BNL))
    a_BN = jax.nn.softmax(nn.Dense(1, name="w")(v_BND * u_BND)[..., 0], axis=1)
    self.sow("intermediates", "attention_BHW", a_BN.reshape(b, h, w))
    return jnp.einsum("bn,bnl->bl", a_BN, h_BNL)
