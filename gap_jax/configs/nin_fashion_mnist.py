"""The main job: NiN (the paper's MNIST variant) with a GAP head on Fashion-MNIST, on CPU.

Run: ./launch.sh fashion   (or ./launch.sh train --config gap_jax/configs/nin_fashion_mnist.py --workdir runs/nin_fashion_mnist)
In bfloat16 (float32 parameters): gap_jax/configs/nin_fashion_mnist.py:bfloat16; both over 3 seeds side by
side: ./launch.sh reproduce fashion_precision --seeds 3.
Data: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), or $GAP_JAX_DATA_DIR.
Expect: see README ("Main job") for the accuracy and time measured on 2 CPU cores.
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
