"""The main job: NiN (the paper's MNIST variant) with a GAP head on Fashion-MNIST, on CPU.

Run: ./launch.sh   (or ./launch.sh train --config gap_jax/configs/nin_fashion_mnist.py --workdir runs/nin_fashion_mnist)
Data: /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist), or $GAP_JAX_DATA_DIR.
Expect: see README ("Main job") for the accuracy and time measured on 2 CPU cores.
"""

from gap_jax.configs import default


def get_config():
  c = default.get_config()
  c.model = "nin_mnist"
  c.dataset = "fashion_mnist"
  c.head = "gap"
  c.num_epochs = 3.0
  c.batch_size = 64
  c.eval_every_steps = 469  # about half an epoch
  return c
