"""The NiN paper's training recipe (original release, ../shared/reference/nin.md), shared by the configs
in this folder, one per row of the paper's tables. Not a runnable config on its own.

Known: Gaussian init std 0.05 for every layer; SGD, momentum 0.9, weight decay 0.001 on weights, learning
rate 0.01 for weights and 0.02 for biases; batch 128; dropout 0.5 after the first two mlpconv blocks;
GCN + ZCA for CIFAR; ~200 epochs at the base rate, then /10 to epoch 230, /10 again to 260.
Unknown, and chosen here: the paper divided by 10 "when the validation accuracy stops improving"; we
divide at the release's epochs 200 and 230 of 260 (a fixed schedule, so runs are reproducible); no
warm-up; the test split is evaluated once per epoch (tune with --config.eval_split=validation).
"""

from gap_jax.configs import default


def get_config():
  c = default.get_config()
  c.model = "nin"
  c.head, c.head_placement = "gap", "classify_then_pool"
  c.final_relu = True
  c.kernel_init, c.init_std = "normal", 0.05
  c.optimizer, c.momentum = "sgd", 0.9
  c.learning_rate, c.bias_lr_multiplier = 0.01, 2.0
  c.weight_decay = 0.001
  c.batch_size = 128
  c.num_epochs = 260.0
  c.lr_schedule, c.lr_boundaries, c.warmup_steps = "step", (200 / 260, 230 / 260), 0
  c.dropout = 0.5
  c.preprocess = "auto"  # GCN + ZCA for CIFAR, LCN for SVHN (gap_jax/data/specs.py)
  c.checkpoint_every_steps = 2000
  c.eval_batch_size = 1000
  return c
