"""A tiny run for tests and smoke checks: NiN MNIST variant, GAP, synthetic 16x16 motifs, 4 classes.

Run: ./launch.sh train --config gap_jax/configs/synthetic.py --workdir runs/synthetic
Expect well above chance (25%) within its 60 steps; under a minute on 2 CPU cores.
"""

from gap_jax.configs import default


def get_config():
  c = default.get_config()
  c.dataset = "synthetic"
  c.num_train_steps = 60
  c.batch_size = 32
  c.warmup_steps = 10
  c.eval_every_steps = 30
  c.eval_train_examples = 512
  return c
