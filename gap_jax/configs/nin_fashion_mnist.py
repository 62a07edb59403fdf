"""The main job: NiN (the paper's MNIST variant) with a GAP head on Fashion-MNIST, on CPU.

Run: ./launch.sh fashion   (or ./launch.sh train --config gap_jax/configs/nin_fashion_mnist.py --workdir runs/nin_fashion_mnist)
In bfloat16 (float32 parameters): gap_jax/configs/nin_fashion_mnist.py:bfloat16; both over 3 seeds side by
side: ./launch.sh reproduce fashion_precision --seeds 3.
Data: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), or $GAP_JAX_DATA_DIR.
Expect: 89.24% test accuracy after 3 epochs (2,811 steps at batch 64), 436 s of training, 7 min 20 s for the
whole command on 2 cores of an Intel Xeon (JAX 0.10.2, 2026-12-01; results/main_job/); 89.36% in 444 s on an AMD
EPYC Zen 3 (AVX2, 2026-12-02; results/main_job/zen3-avx2/). In bfloat16: 89.17% in 323 s (the Xeon).
"""

from gap_jax.configs import default


def get_config(compute_dtype: str = "float32"):
  c = default.get_config()
  c.compute_dtype = compute_dtype  # checked with every other field (gap_jax/validate.py)
  c.model = "nin_mnist"
  c.dataset = "fashion_mnist"
  c.head = "gap"
  c.num_epochs = 3.0
  c.batch_size = 64
  c.eval_every_steps = 469  # about half an epoch
  return c
