"""Training images/s of our real jitted step (gap_jax.steps.make_train_step) beside PyTorch's.

Run: ./launch.sh bench [--quick] [--parts peak,nin,heads,pipeline,check] [--steps N] [--rounds R]
Prints, per model (NiN CIFAR-10 at 32x32x3, the MNIST variant at 28x28x1) and per head (MNIST variant):
images/s of ours and of the same architecture in PyTorch eager (when torch is installed: the `bench`
extra), their ratio, achieved GFLOP/s (analytic conv FLOPs; XLA's cost analysis beside it) against a
large fp32 matmul and, on an accelerator, as MFU against its dense peak (benchmarks/device_peaks.py),
compile time, and the on-device input pipeline's images/s against the step's. On a GPU or TPU:
./launch.sh bench --parts peak,nin,pipeline --variants train,bf16 --no-torch
Everything is timed interleaved, round by round, because the machine is shared (benchmarks/README.md).
"""

import argparse
import json
import os
import platform
import resource
import sys
import time

PARTS = ("peak", "nin", "heads", "pipeline", "check")
# The step compiled with other XLA options, convolutions or compute dtype (same numerics up to rounding):
# (XLA compiler options, compute dtype, cpu_kernels).
# train: exactly as training runs (on CPU: convolutions by oneDNN where verified, dots by XLA's Eigen; gap_jax/cpu);
# xla_conv: convolutions by XLA's Eigen too (what training used before oneDNN);
# ynn_dots: dots by YNNPACK, convolutions by Eigen (training from the first XLA switch until the second);
# ynn_conv: dots and convolutions by YNNPACK (XLA:CPU's default, what training used at first);
# bf16: compute_dtype bfloat16 as training runs it (on CPU: oneDNN's bfloat16 convolutions, on AMX tiles where
#   the CPU has them); bf16_xla_conv: the same with XLA's bfloat16 convolutions.
VARIANTS = {
    "train": ({}, "float32", "auto"),
    "xla_conv": ({}, "float32", "xla"),
    "ynn_dots": ({"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}, "float32", "xla"),
    "ynn_conv": ({"xla_cpu_experimental_ynn_fusion_type":
                  "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION"}, "float32", "xla"),
    "bf16": ({}, "bfloat16", "auto"),
    "bf16_xla_conv": ({}, "bfloat16", "xla"),
}
# PyTorch's contestants for each compute dtype (float32, or bfloat16 under autocast): eager, and compiled by
# torch.compile (inductor); ours is compared with the faster of the two.
TORCH_NAMES = {"float32": ("pytorch", "pytorch.compile"), "bfloat16": ("pytorch[bf16]", "pytorch.compile[bf16]")}

def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {PARTS}")
  p.add_argument("--models", default="nin_mnist,nin", help="for the nin and pipeline parts")
  p.add_argument("--heads", default="all", help="for the heads part, comma-separated (all: HEADS)")
  p.add_argument("--variants", default=None,
                 help=f"ours, comma-separated, of {sorted(VARIANTS)} (default train,xla_conv; --quick: train)")
  p.add_argument("--steps", type=int, default=5, help="training steps per timed chunk")
  p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are over these)")
  p.add_argument("--batch", type=int, default=128)
  p.add_argument("--no-torch", action="store_true", help="skip PyTorch even when it is installed")
  p.add_argument("--no-torch-compile", action="store_true", help="PyTorch eager only (torch.compile takes minutes)")
  p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX starts")
  p.add_argument("--malloc", choices=("reuse", "glibc"), default="reuse",
                 help="reuse (as launch.sh sets): keep freed memory in one glibc heap (MALLOC_REUSE), for "
                      "ours and PyTorch; glibc: its defaults")
  p.add_argument("--quick", action="store_true", help="about a minute: fewer steps/rounds, gap head only")
  p.add_argument("--peak-tflops", type=float, default=None,
                 help="the device's dense peak TFLOP/s for the compute dtype, for MFU (default: "
                      "benchmarks/device_peaks.py by device kind; none on CPU)")
  p.add_argument("--json", default=None, metavar="PATH",
                 help="also write every figure printed (machine, peak, rows, pipeline, checks) as JSON")
  args = p.parse_args(argv)
  if args.quick:
    args.steps, args.rounds = 1, 3
    if args.heads == "all":
      args.heads = "gap"
    if args.parts == ",".join(PARTS):
      args.parts = "peak,nin,pipeline"
    args.variants = args.variants or "train"
  args.variants = args.variants or "train,xla_conv"
  args.parts = args.parts.split(",")
  args.variants = args.variants.split(",")
  unknown = [x for x in args.parts if x not in PARTS] + [v for v in args.variants if v not in VARIANTS]
  if unknown:
    p.error(f"unknown part or variant {unknown}")
  return args


# glibc's malloc as training sets it on CPU (gap_jax/cpu/malloc.py), for ours and PyTorch (whose allocations
# go through the same malloc), or glibc's defaults: read by glibc at process start, hence the re-exec below.
from gap_jax.cpu.malloc import SETTINGS as MALLOC_REUSE, is_set as malloc_reuse_set  # noqa: E402

ARGS = parse_args() if __name__ == "__main__" else None
if ARGS and (ARGS.malloc == "reuse") != malloc_reuse_set():
  for k, v in MALLOC_REUSE.items():
    if ARGS.malloc == "reuse":
      os.environ[k] = v
    else:
      os.environ.pop(k, None)
  os.execv(sys.executable, [sys.executable, *sys.argv])
if ARGS and ARGS.xla_flags:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from gap_jax.configs import default  # noqa: E402
from gap_jax.data import Dataset, Split  # noqa: E402
from gap_jax.data.augment import augment, normalize  # noqa: E402
from gap_jax.data.specs import SPECS  # noqa: E402
from gap_jax.heads import HEADS, head_class  # noqa: E402
from gap_jax.cpu import onednn  # noqa: E402
from gap_jax.cpu.identity import cpu_identity  # noqa: E402
from gap_jax.models import MODELS  # noqa: E402
from gap_jax.steps import make_gather, run_keys  # noqa: E402
from gap_jax.training_setup import build_training_setup  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import device_peaks  # noqa: E402
import timing  # noqa: E402

try:
  import torch
  import torch_reference
except ImportError:
  torch = torch_reference = None

# Each model on the images of its dataset, with that dataset's paper augmentation and storage dtype
# (CIFAR is stored as float32 after GCN+ZCA, Fashion-MNIST as uint8 pixels).
MODEL_DATA = {"nin": ("cifar10", np.float32), "nin_mnist": ("fashion_mnist", np.uint8)}


def placement_for(head: str) -> str:
  only_pool_first = getattr(head_class(head), "only_pool_then_classify", "")
  return "pool_then_classify" if only_pool_first else "classify_then_pool"


def bench_config(model: str, head: str, batch: int, dtype: str):
  """The paper's recipe: SGD momentum 0.9, weight decay 1e-3 on kernels, bias lr x2, Gaussian(0.05) init,
  dropout 0.5, ReLU on the class maps; the dataset's augmentation."""
  c = default.get_config()
  spec = SPECS[MODEL_DATA[model][0]]
  c.update(model=model, head=head, head_placement=placement_for(head), optimizer="sgd", batch_size=batch,
           learning_rate=0.01, lr_schedule="constant", momentum=0.9, weight_decay=1e-3,
           bias_lr_multiplier=2.0, kernel_init="normal", init_std=0.05, dropout=0.5, final_relu=True,
           compute_dtype=dtype,
           crop_padding=spec.crop_padding, flip=spec.flip)
  return c


def synthetic_data(model: str, batch: int, num_batches: int = 16, seed: int = 0) -> Dataset:
  """Random images of the model's dataset shape and storage dtype; mean/std as the loader computes. Its test
  split is its training split (the benchmark never evaluates)."""
  spec = SPECS[MODEL_DATA[model][0]]
  n, rng = batch * num_batches, np.random.default_rng(seed)
  if MODEL_DATA[model][1] == np.uint8:
    images = rng.integers(0, 256, (n, *spec.image_shape), dtype=np.uint8)
    mean, std = images.mean((0, 1, 2)) / 255.0, images.std((0, 1, 2)) / 255.0
  else:
    images = rng.standard_normal((n, *spec.image_shape), dtype=np.float32)
    mean, std = np.zeros(spec.image_shape[-1]), np.ones(spec.image_shape[-1])
  labels = rng.integers(0, spec.num_classes, n, dtype=np.int32)
  split = Split(images, labels)
  return Dataset(f"random {MODEL_DATA[model][0]}", split, split, spec.num_classes, mean.astype(np.float32),
                 std.astype(np.float32))


class Ours:
  """The real training step, compiled once (timed), then called exactly as the training loop calls it."""

  def __init__(self, model_name, head, batch, variant, data: Dataset):
    options, dtype, conv = VARIANTS[variant]
    self.config = config = bench_config(model_name, head, batch, dtype)
    config.cpu_kernels = conv
    run = build_training_setup(config, data)
    self.model, self.state = run.model, run.initial_state()
    _, order_key, step_key = run_keys(config.seed)
    train_x, train_y, _, _ = run.on_device()
    # The step's own arguments, then the data's (mean, std) that run.train_step binds (steps.Bound).
    self.step_args = [train_x, train_y, run.epoch_order(order_key, 0), step_key]
    self.args = [*self.step_args, *run.train_step.bound]
    t = time.perf_counter()
    lowered = run.train_step.jitted.lower(self.state, *self.args)
    self.compiled = lowered.compile(compiler_options=options or None)
    self.compile_s = time.perf_counter() - t
    cost = self.compiled.cost_analysis()
    self.xla_flops = (cost if isinstance(cost, dict) else cost[0]).get("flops", float("nan"))
    self.pipeline_args = (data.mean, data.std, run.steps_per_epoch, run.mesh)
    for _ in range(2):
      self.step()
    jax.block_until_ready(self.metrics)

  def page_faults_per_step(self, steps=2):
    """Minor page faults of the process per step: fresh memory touched (0 once freed memory is reused)."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
      self.step()
    jax.block_until_ready(self.metrics)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps

  def step(self):
    self.state, self.metrics = self.compiled(self.state, *self.args)
    return self.metrics

  def runner(self, steps):
    return timing.timed(self.step, steps, self.config.batch_size, jax.block_until_ready)

  def pipeline_runner(self, steps):
    """Only the step's input part: gather a batch from the on-device dataset, normalise, augment
    (the same calls as gap_jax/steps.py's step, without the model)."""
    mean, std, steps_per_epoch, mesh = self.pipeline_args
    c, batch = self.config, self.config.batch_size
    gather = make_gather(batch, steps_per_epoch, mesh)

    @jax.jit
    def pipeline(i, images, labels, order, step_key):
      x, y = gather(images, labels, order, i)
      aug_key, _ = jax.random.split(jax.random.fold_in(step_key, i))
      return augment(aug_key, normalize(x, mean, std), c.crop_padding, c.flip), y, i + 1

    counter = [jnp.zeros((), jnp.int32)]

    def one():
      x, y, counter[0] = pipeline(counter[0], *self.step_args)  # (mean, std): closed over above
      return x
    one(), jax.block_until_ready(one())
    return timing.timed(one, steps, batch, jax.block_until_ready)


class Theirs:
  """The same architecture and step in PyTorch, eager or torch.compile-d, in ours' compute dtype (bfloat16:
  autocast)."""

  def __init__(self, ours: Ours, data: Dataset, compiled: bool):
    images, labels = data.train.images, data.train.labels
    c = ours.config
    blocks = ours.model.blocks
    self.model = torch_reference.NiN(blocks, data.image_shape, data.num_classes, c.head, c.head_placement,
                                     dict(c.head_args.get(c.head, {})), c.dropout, c.final_relu, c.init_std)
    opt = torch_reference.make_optimizer(self.model, c.learning_rate, c.momentum, c.weight_decay,
                                         c.bias_lr_multiplier)
    dtype = torch.bfloat16 if c.compute_dtype == "bfloat16" else None
    net = torch.compile(self.model) if compiled else self.model  # the same parameters, which opt updates
    self.step = torch_reference.make_train_step(net, opt, torch.from_numpy(images), torch.from_numpy(
        labels).long(), data.mean, data.std, c.batch_size, c.crop_padding, c.flip, dtype)
    self.i = 0
    self.batch = c.batch_size
    t = time.perf_counter()
    for _ in range(2):  # torch.compile compiles at the first call
      self.one()
    self.compile_s = time.perf_counter() - t

  def one(self):
    self.i += 1
    return self.step(self.i)

  def runner(self, steps):
    return timing.timed(self.one, steps, self.batch)


def compare(model_name, head, args, peaks):
  """One row per contestant: ours in each variant, then PyTorch."""
  data = synthetic_data(model_name, args.batch)
  ours = {v: Ours(model_name, head, args.batch, v, data) for v in args.variants}
  first = next(iter(ours.values()))
  contestants = {f"ours[{v}]": o.runner(args.steps) for v, o in ours.items()}
  has_torch = torch is not None and not args.no_torch and head in torch_reference.HEADS
  if has_torch:
    for o in {o.config.compute_dtype: o for o in ours.values()}.values():  # one PyTorch pair per dtype
      for name, compiled in zip(TORCH_NAMES[o.config.compute_dtype], (False, True)):
        if compiled and args.no_torch_compile:
          continue
        contestants[name] = Theirs(o, data, compiled).runner(args.steps)
  elif torch is not None and not args.no_torch:
    print(f"{model_name:9} {head:13} (no PyTorch version of this head in benchmarks/torch_reference.py)")
  samples = timing.interleave(contestants, args.rounds)
  flops = timing.train_flops_per_image(first.model.blocks, data.image_shape, data.num_classes)
  rows = []
  for name, s in samples.items():
    o = ours.get(name[5:-1]) if name.startswith("ours") else None
    ips = timing.images_per_s(s)
    dtype = o.config.compute_dtype if o else next(d for d, names in TORCH_NAMES.items() if name in names)
    peak = (peaks or {}).get(dtype)
    row = {"model": model_name, "head": head, "who": name, "img_s": ips, "best": 1 / min(s),
           "spread": timing.spread(s), "faults": o.page_faults_per_step() if o else None,
           "gflop_s": flops * ips / 1e9, "peak_frac": flops * ips / 1e9 / peak if peak else None,
           "compile_s": o.compile_s if o else None,
           "xla_gflop_per_img": o.xla_flops / args.batch / 1e9 if o else None,
           "mfu": mfu(flops * ips, o.config.compute_dtype, args.peak_tflops) if o else None}
    if has_torch and o is not None:  # against the faster PyTorch of this dtype
      best = max((n for n in TORCH_NAMES[o.config.compute_dtype] if n in samples),
                 key=lambda n: timing.images_per_s(samples[n]))
      row["vs_torch"], row["vs"] = timing.ratio(s, samples[best]), best
    rows.append(row)
    print(format_row(row), flush=True)
  return rows, ours


def mfu(flop_s: float, dtype: str, peak_override: float | None) -> float | None:
  """Model FLOP utilization against the device's dense peak for `dtype` (benchmarks/device_peaks.py)."""
  peak = peak_override or device_peaks.peak_tflops(jax.devices()[0].device_kind, dtype)
  return flop_s / (peak * 1e12) if peak else None


def format_row(r):
  vs = r.get("vs_torch")
  vs_s = f"{vs[0]:5.2f}x [{vs[1]:.2f}-{vs[2]:.2f}] ({r['vs']})" if vs else " " * 17
  extra = (f"  compile {r['compile_s']:5.1f}s  XLA {r['xla_gflop_per_img']:.2f} GFLOP/img"
           f"  {r['faults']:6.0f} page faults/step") if r["compile_s"] else ""
  peak = f" ({100 * r['peak_frac']:3.0f}% of its dtype's matmul)" if r["peak_frac"] else ""
  peak += f"  MFU {100 * r['mfu']:4.1f}%" if r.get("mfu") else ""
  return (f"{r['model']:9} {r['head']:13} {r['who']:17} {r['img_s']:7.1f} img/s (best {r['best']:6.1f}, "
          f"spread {100 * r['spread']:3.0f}%)  vs PyTorch {vs_s}  {r['gflop_s']:5.1f} GFLOP/s{peak}{extra}")


def matmul_peak(args, n=2048):
  """GFLOP/s of one large fp32 and bf16 matmul in JAX, PyTorch's beside them: the machine's ceiling now,
  by compute dtype (JAX's), for the rows' share of it."""
  a = jax.random.normal(jax.random.key(0), (n, n))
  f32 = jax.jit(lambda a: a @ a)
  bf16 = jax.jit(lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32))
  ab = a.astype(jnp.bfloat16)
  contestants = {"jax f32": timing.timed(lambda: f32(a), 1, 1, jax.block_until_ready),
                 "jax bf16": timing.timed(lambda: bf16(ab), 1, 1, jax.block_until_ready)}
  if torch is not None and not args.no_torch:
    ta = torch.randn(n, n)
    contestants["pytorch f32"] = timing.timed(lambda: ta @ ta, 1, 1)
  for fn in contestants.values():
    fn()
  samples = timing.interleave(contestants, max(args.rounds, 5))
  result = {k: 2 * n**3 / min(s) / 1e9 for k, s in samples.items()}  # a ceiling: the best round
  print("matmul peak (best round) " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in result.items())
        + f" ({n}x{n}x{n})")
  return {"float32": result["jax f32"], "bfloat16": result["jax bf16"]}


def pipeline_vs_step(ours: Ours, args):
  contestants = {"step": ours.runner(args.steps), "pipeline": ours.pipeline_runner(args.steps * 20)}
  samples = timing.interleave(contestants, args.rounds)
  step, pipe = timing.images_per_s(samples["step"]), timing.images_per_s(samples["pipeline"])
  print(f"{ours.config.model:9} input pipeline (gather + normalise + augment on device) {pipe:9.0f} img/s, "
        f"the whole step {step:6.1f} img/s: {pipe / step:5.0f}x", flush=True)
  return {"model": ours.config.model, "pipeline_img_s": pipe, "step_img_s": step}


def check_against_torch(model_name, head, batch=8):
  """Our logits and PyTorch's on the same parameters and input (eval mode): the same architecture."""
  data = synthetic_data(model_name, batch, num_batches=1)
  c = bench_config(model_name, head, batch, "float32")
  run = build_training_setup(c, data)
  model = run.model
  x = jax.random.normal(jax.random.key(3), (batch, *data.image_shape))
  params = run.initial_state().params
  params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(5), p.shape), params)
  ours_logits = np.asarray(model.apply({"params": params}, x, train=False)[0])
  t = torch_reference.NiN(model.blocks, data.image_shape, data.num_classes, head, c.head_placement,
                          dict(c.head_args.get(head, {})))
  torch_reference.load_flax_params(t, jax.device_get(params))
  with torch.no_grad():
    theirs = t.eval()(torch.from_numpy(np.asarray(x)).permute(0, 3, 1, 2).contiguous()).numpy()
  if np.ptp(ours_logits) < 1e-3:  # dead logits would agree trivially
    raise SystemExit(f"check {model_name} {head}: our logits are constant, nothing to compare")
  err = float(np.abs(ours_logits - theirs).max() / np.abs(ours_logits).max())
  print(f"check {model_name:9} {head:13} max |ours - pytorch| / max |ours| = {err:.1e} "
        f"{'ok' if err < 1e-4 else 'MISMATCH'}", flush=True)
  return err


def cpu_model_and_isa() -> tuple[str, str]:
  """The CPU's model name and the instruction sets that decide its kernels (gap_jax/cpu/identity.py), beside
  oneDNN's effective ISA (ONEDNN_MAX_CPU_ISA caps it) where oneDNN is usable."""
  identity = cpu_identity()
  if identity is None:
    return platform.processor() or platform.machine(), "unknown"
  model, flags = identity
  isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
  onednn_isa = onednn.cpu_isa() or "none"
  cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
  return model, f"{' '.join(isa)}; oneDNN ISA {onednn_isa}" + (f" (ONEDNN_MAX_CPU_ISA={cap})" if cap else "")


def main(args):
  cpu_model, cpu_isa = cpu_model_and_isa()
  machine = {"cpu": cpu_model, "cpu_isa": cpu_isa, "cpus": os.cpu_count(),
             "device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
             "load_average_start": os.getloadavg()[0], "jax": jax.__version__,
             "torch": torch.__version__ if torch is not None else None,
             "onednn": onednn.why_unavailable() or "available",
             "onednn_bf16": onednn.why_unavailable("bfloat16") or f"on {onednn.bf16_isa()}",
             "xla_flags": os.environ.get("XLA_FLAGS", ""), "malloc": "reuse" if malloc_reuse_set() else "glibc",
             "time": time.strftime("%Y-%m-%d %H:%M")}
  print(f"{machine['device']} x {machine['device_count']}; {machine['cpu']}: {machine['cpu_isa']}, {machine['cpus']} CPUs, load average {machine['load_average_start']:.1f}; "
        f"jax {machine['jax']}, torch {machine['torch'] or 'not installed (pip install -e .[bench])'}; "
        f"oneDNN convolutions {machine['onednn']}, bfloat16 {machine['onednn_bf16']}; XLA_FLAGS={machine['xla_flags']!r}; malloc {machine['malloc']}; {machine['time']}", flush=True)
  t0, peaks, rows, pipelines, checks = time.time(), None, [], [], {}
  if "peak" in args.parts:
    peaks = matmul_peak(args)
  heads = list(HEADS) if args.heads == "all" else args.heads.split(",")
  for model_name in args.models.split(","):
    if model_name not in MODEL_DATA:
      raise SystemExit(f"unknown model {model_name!r}: choose of {sorted(MODEL_DATA)} (of {sorted(MODELS)})")
    ours = None
    if "nin" in args.parts:
      new_rows, ours = compare(model_name, "gap", args, peaks)
      rows += new_rows
    if "pipeline" in args.parts:
      ours = ours or {args.variants[0]: Ours(model_name, "gap", args.batch, args.variants[0],
                                             synthetic_data(model_name, args.batch))}
      pipelines.append(pipeline_vs_step(next(iter(ours.values())), args))
  if "heads" in args.parts:
    for head in heads:
      if head != "gap" or "nin" not in args.parts or "nin_mnist" not in args.models:
        rows += compare("nin_mnist", head, args, peaks)[0]
  if "check" in args.parts and torch is not None:
    pairs = [(m, h) for m in ("nin", "nin_mnist") for h in heads if h in torch_reference.HEADS]
    checks = {f"{m}/{h}": check_against_torch(m, h) for m, h in pairs}
  machine["load_average_end"], machine["seconds"] = os.getloadavg()[0], time.time() - t0
  print(f"load average now {machine['load_average_end']:.1f}; {machine['seconds']:.0f} s in all")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"machine": machine, "args": vars(args), "matmul_peak_gflop_s": peaks, "rows": rows,
                 "pipeline": pipelines, "check_rel_error": checks}, f, indent=1)
    print(f"wrote {args.json}")
  if checks and max(checks.values()) >= 1e-4:
    raise SystemExit("the PyTorch reference does not compute what ours computes")
  return rows


if __name__ == "__main__":
  main(ARGS)
