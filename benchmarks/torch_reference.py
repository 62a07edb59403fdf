"""The same NiN models and heads in PyTorch (eager, NCHW), to time a training step side by side with ours.

Built from gap_jax's own block lists and head hyper-parameters, so the architectures cannot drift apart;
`load_flax_params` copies our parameters in, and the benchmark's `check` part compares the logits. A head
that has no PyTorch version here is skipped by the benchmark (`HEADS` lists those that have one).
"""

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _tokens(x_BCHW):
  return x_BCHW.flatten(2)  # (B, C, N)


class Per(nn.Module):
  """A head given as a function of the (B, C, N) tokens, with at most one learned scalar."""

  def __init__(self, fn, scalar=None):
    super().__init__()
    self.fn = fn
    self.scalar = nn.Parameter(torch.tensor(float(scalar))) if scalar is not None else None

  def forward(self, x_BCHW):
    return self.fn(_tokens(x_BCHW), self.scalar) if self.scalar is not None else self.fn(_tokens(x_BCHW))


def _lse(r):
  def fn(t, r_param=None):
    rr = r if r_param is None else r_param
    m = t.detach().amax(-1, keepdim=True)
    return m[..., 0] + torch.log1p(torch.expm1(rr * (t - m)).mean(-1)) / rr
  return fn


def _gem(eps):
  def fn(t, p):
    t = t.clamp_min(eps)
    m = t.detach().amax(-1, keepdim=True)
    return m[..., 0] * ((t / m) ** p).mean(-1) ** (1 / p)
  return fn


def _wildcat_count(k, n):
  return 0 if k <= 0 else round(k * n) if k < 1 else min(int(k), n)


def _topk(k_max, k_min, alpha):
  def fn(t):
    n = t.shape[-1]
    hi, lo = _wildcat_count(k_max, n), _wildcat_count(k_min, n)
    s = torch.sort(t, dim=-1).values
    out = s[..., n - hi:].mean(-1)
    return (out + alpha * s[..., :lo].mean(-1)) / 2 if lo > 0 and alpha != 0 else out
  return fn


def _gwrp(decay):
  def fn(t):
    n = t.shape[-1]
    w = np.float64(decay) ** np.arange(n)
    w = torch.tensor(w / w.sum(), dtype=t.dtype)
    return torch.sort(t, dim=-1, descending=True).values @ w
  return fn


class Flatten(nn.Module):
  """fc: flatten in our (H, W, C) order, so a dense layer's rows mean the same in both."""

  def __init__(self, dropout):
    super().__init__()
    self.dropout = nn.Dropout(dropout)

  def forward(self, x_BCHW):
    return self.dropout(x_BCHW.permute(0, 2, 3, 1).flatten(1))


class MultiheadAttentionPool(nn.Module):
  """map: one learned probe attends to the H*W tokens (Flax's MultiHeadDotProductAttention), then
  x + MLP(LayerNorm(x)) with tanh-approximated GELU (Flax's nn.gelu default)."""

  def __init__(self, c, num_heads, mlp_dim):
    super().__init__()
    self.h = num_heads
    self.probe = nn.Parameter(torch.zeros(1, 1, c))
    self.q, self.k, self.v, self.out = (nn.Linear(c, c) for _ in range(4))
    self.norm = nn.LayerNorm(c, eps=1e-6)
    self.hidden, self.mlp_out = nn.Linear(c, mlp_dim or 4 * c), nn.Linear(mlp_dim or 4 * c, c)

  def forward(self, x_BCHW):
    x = _tokens(x_BCHW).transpose(1, 2)  # (B, N, C)
    b, n, c = x.shape
    split = lambda t: t.reshape(b, -1, self.h, c // self.h).transpose(1, 2)
    q, k, v = split(self.q(self.probe.expand(b, 1, c))), split(self.k(x)), split(self.v(x))
    a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.h), dim=-1)
    y = self.out((a @ v).transpose(1, 2).reshape(b, 1, c))
    y = y + self.mlp_out(F.gelu(self.hidden(self.norm(y)), approximate="tanh"))
    return y[:, 0]


class GatedAttentionMIL(nn.Module):
  def __init__(self, c, embed_dim, attention_dim):
    super().__init__()
    self.embed = nn.Linear(c, embed_dim) if embed_dim else None
    width = embed_dim or c
    self.V, self.U = nn.Linear(width, attention_dim), nn.Linear(width, attention_dim)
    self.w = nn.Linear(attention_dim, 1)

  def forward(self, x_BCHW):
    h = _tokens(x_BCHW).transpose(1, 2)
    if self.embed is not None:
      h = F.relu(self.embed(h))
    a = torch.softmax(self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h)))[..., 0], dim=1)
    return torch.einsum("bn,bnl->bl", a, h)


def make_head(name, args, c, hw):
  """(head module, output width, per_channel) for our head `name` on c channels of hw locations."""
  per = {
      "gap": lambda: Per(lambda t: t.mean(-1)),
      "gmp": lambda: Per(lambda t: t.amax(-1)),
      "lse": lambda: Per(_lse(args["r"]), args["r"] if args["learn_r"] else None),
      "gem": lambda: (Per(_gem(args["eps"]), args["p"]) if args["learn_p"]
                      else Per(lambda t: _gem(args["eps"])(t, args["p"]))),
      "topk": lambda: Per(_topk(args["k_max"], args["k_min"], args["alpha"])),
      "gwrp": lambda: Per(_gwrp(args["decay"])),
      "avgmax": lambda: Per(lambda t: 0.5 * (t.mean(-1) + t.amax(-1))),
  }
  if name in per:
    return per[name](), c, True
  if name == "catavgmax":
    return Per(lambda t: torch.cat([t.mean(-1), t.amax(-1)], dim=-1)), 2 * c, False
  if name == "fc":
    return Flatten(args["dropout"]), c * hw, False
  if name == "map":
    return MultiheadAttentionPool(c, args["num_heads"], args["mlp_dim"]), c, False
  if name == "attention_mil":
    return GatedAttentionMIL(c, args["embed_dim"], args["attention_dim"]), args["embed_dim"] or c, False
  raise KeyError(name)


HEADS = ("gap", "gmp", "lse", "gem", "topk", "gwrp", "avgmax", "catavgmax", "fc", "map", "attention_mil")


class NiN(nn.Module):
  """gap_jax.models.nin.NiN: mlpconv blocks (ReLU after every conv), max-pool 3/2 ceil mode and dropout
  after every block but the last, then the class-map 1x1 conv and the head (classify_then_pool), or the
  head and a dense layer (pool_then_classify)."""

  def __init__(self, blocks, in_shape, num_classes, head="gap", placement="classify_then_pool",
               head_args=None, dropout=0.5, final_relu=True, init_std=0.05):
    super().__init__()
    h, w, c = in_shape
    layers = []
    for b, block in enumerate(blocks):
      for features, k in block:
        layers += [nn.Conv2d(c, features, k, padding=k // 2), nn.ReLU()]
        c = features
      if b < len(blocks) - 1:
        layers += [nn.MaxPool2d(3, 2, ceil_mode=True), nn.Dropout(dropout)]
        h, w = -(-h // 2), -(-w // 2)
    self.body = nn.Sequential(*layers)
    self.placement, self.final_relu = placement, final_relu
    if placement == "classify_then_pool":
      self.class_maps = nn.Conv2d(c, num_classes, 1)
      c = num_classes
    self.head, width, per_channel = make_head(head, head_args or {}, c, h * w)
    needs_dense = placement == "pool_then_classify" or not per_channel or width != num_classes
    self.classifier = nn.Linear(width, num_classes) if needs_dense else None
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, std=init_std)
        nn.init.zeros_(m.bias)

  def forward(self, x_BCHW):
    x = self.body(x_BCHW)
    if self.placement == "classify_then_pool":
      x = self.class_maps(x)
      x = F.relu(x) if self.final_relu else x
    x = self.head(x)
    return self.classifier(x) if self.classifier is not None else x


def _t(array):
  return torch.from_numpy(np.array(array, np.float32))  # a writable copy


def is_bias(name: str) -> bool:
  return name.endswith("bias")


def make_optimizer(model, lr, momentum, weight_decay, bias_lr_multiplier=1.0):
  """SGD with momentum, weight decay on kernels only, as gap_jax.optim does."""
  params = list(model.named_parameters())
  groups = [{"params": [p for n, p in params if not is_bias(n)], "weight_decay": weight_decay},
            {"params": [p for n, p in params if is_bias(n)], "weight_decay": 0.0,
             "lr": lr * bias_lr_multiplier}]
  return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def make_train_step(model, opt, images, labels, mean, std, batch, crop_padding, flip, compute_dtype=None):
  """step(i): gather batch i of a fixed order from the in-memory dataset, normalise, augment, then one
  SGD step: what ours does inside its jitted step. compute_dtype torch.bfloat16: the forward pass under
  autocast (float32 parameters, bfloat16 convolutions and matmuls), as our compute_dtype does."""
  precision = (torch.autocast("cpu", dtype=compute_dtype) if compute_dtype is not None
               else contextlib.nullcontext())
  n = len(labels)
  order = torch.randperm(n)
  gen = torch.Generator().manual_seed(0)
  mean_t, std_t = torch.as_tensor(mean).view(1, -1, 1, 1), torch.as_tensor(std).view(1, -1, 1, 1)
  model.train()

  def step(i):
    idx = order[(i % (n // batch)) * batch:][:batch]
    x = images[idx]  # (B, H, W, C) as stored
    x = x.float() if x.dtype.is_floating_point else (x.float() / 255.0)
    x = x.permute(0, 3, 1, 2)
    if not images.dtype.is_floating_point:
      x = (x - mean_t) / std_t
    if crop_padding:
      x = _random_crop(x, crop_padding, gen)
    if flip:
      flips = torch.rand(batch, generator=gen) < 0.5
      x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
    with precision:
      logits = model(x.contiguous())
    loss = F.cross_entropy(logits.float(), labels[idx])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss

  return step


def _random_crop(x_BCHW, p, gen):
  b, _, h, w = x_BCHW.shape
  padded = F.pad(x_BCHW, (p, p, p, p))
  off = torch.randint(0, 2 * p + 1, (b, 2), generator=gen)
  rows = (off[:, 0:1] + torch.arange(h)).view(b, 1, h, 1)
  cols = (off[:, 1:2] + torch.arange(w)).view(b, 1, 1, w)
  return padded[torch.arange(b).view(b, 1, 1, 1), torch.arange(x_BCHW.shape[1]).view(1, -1, 1, 1), rows, cols]


def load_flax_params(model: NiN, params) -> None:
  """Copy our Flax parameters into `model` (HWIO -> OIHW kernels, (in, out) -> (out, in) dense)."""
  convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
  with torch.no_grad():
    for i, conv in enumerate(convs):
      conv.weight.copy_(_t((params[f"Conv_{i}"]["kernel"])).permute(3, 2, 0, 1))
      conv.bias.copy_(_t((params[f"Conv_{i}"]["bias"])))
    out = params["output"]
    if "class_maps" in out:
      model.class_maps.weight.copy_(_t((out["class_maps"]["kernel"])).permute(3, 2, 0, 1))
      model.class_maps.bias.copy_(_t((out["class_maps"]["bias"])))
    if model.classifier is not None:
      _dense(model.classifier, out["classifier"])
    _load_head(model.head, out.get("head", {}))


def _dense(linear, p):
  linear.weight.copy_(_t((p["kernel"])).reshape(linear.weight.shape[1], -1).T)
  linear.bias.copy_(_t((p["bias"])).reshape(-1))


def _load_head(head, p):
  if isinstance(head, Per) and head.scalar is not None:
    head.scalar.copy_(torch.tensor(float(np.asarray(next(iter(p.values()))))))
  elif isinstance(head, MultiheadAttentionPool):
    head.probe.copy_(_t((p["probe"])))
    for name in ("query", "key", "value"):
      _dense(getattr(head, name[0]), p["attention"][name])
    o = p["attention"]["out"]
    head.out.weight.copy_(_t((o["kernel"])).reshape(-1, head.out.weight.shape[0]).T)
    head.out.bias.copy_(_t((o["bias"])))
    head.norm.weight.copy_(_t((p["norm"]["scale"])))
    head.norm.bias.copy_(_t((p["norm"]["bias"])))
    _dense(head.hidden, p["mlp_hidden"])
    _dense(head.mlp_out, p["mlp_out"])
  elif isinstance(head, GatedAttentionMIL):
    for name in ("embed", "V", "U", "w"):
      if getattr(head, name) is not None:
        _dense(getattr(head, name), p[name])
