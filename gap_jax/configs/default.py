"""Every field a training run reads, with its default. Other configs start from this one.

Run: ./launch.sh train --config gap_jax/configs/default.py --workdir runs/default
(NiN MNIST variant, GAP head, on the synthetic dataset: about a minute on 2 CPU cores.)
"""

import ml_collections
from ml_collections.config_dict import placeholder


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model and head.
  c.model = "nin_mnist"  # gap_jax.models.MODELS
  c.head = "gap"  # gap_jax.heads.HEADS
  c.head_placement = "classify_then_pool"  # or "pool_then_classify"
  c.head_args = ml_collections.ConfigDict({"dropout": 0.0})  # the head's own hyper-parameters
  c.model_args = ml_collections.ConfigDict()  # extra model fields, e.g. {"num_maps": 16} for "cnn"
  c.dropout = 0.5  # after each pooling layer inside the model
  c.final_relu = True  # the paper's ReLU after the class-map layer
  c.kernel_init = "lecun_normal"  # gap_jax.models.nin.KERNEL_INITS; "normal" is the paper's Gaussian
  c.init_std = 0.05  # its std (paper: 0.05 for every layer)
  c.compute_dtype = "float32"  # or "bfloat16" (parameters stay float32)

  # Data.
  c.dataset = "synthetic"  # gap_jax.data.DATASETS
  c.data_dir = placeholder(str)  # None: $GAP_JAX_DATA_DIR, then the dataset's default folder
  c.crop_padding = 0  # random-crop augmentation: pad by this many pixels, crop back (0: off)
  c.flip = False  # random horizontal flips
  c.synthetic = ml_collections.ConfigDict(
      {"num_train": 2048, "num_test": 512, "image_size": 16, "num_classes": 4, "motif_size": 5, "seed": 0})

  # Optimisation.
  # Adam keeps the paper's final ReLU trainable; SGD (the paper's) kills every class map early (README).
  c.optimizer = "adam"  # gap_jax.optim.OPTIMIZERS
  c.batch_size = 64  # global, over all devices
  c.num_epochs = 3.0
  c.num_train_steps = placeholder(int)  # when set, overrides num_epochs
  c.learning_rate = 1e-3
  c.lr_schedule = "cosine"  # gap_jax.optim.SCHEDULES
  c.warmup_steps = 100
  c.lr_boundaries = (0.5, 0.75)  # "step" schedule: fractions of training where lr is divided by 10
  c.momentum = 0.9
  c.weight_decay = 0.0  # on kernels only, added to the gradient (the paper: 0.001 with SGD)
  c.bias_lr_multiplier = 1.0  # the paper used 2 (bias learning rate twice the weights')

  # Bookkeeping.
  c.seed = 0
  c.log_every_steps = 20
  c.eval_every_steps = placeholder(int)  # None: once per epoch
  c.eval_batch_size = 500
  c.eval_train_examples = 10_000  # train-split examples scored at the end (train accuracy/loss)
  c.checkpoint_every_steps = placeholder(int)  # None: at each evaluation
  c.checkpoints_to_keep = 3
  return c
