"""Every field a training run reads, with its default. Other configs start from this one.

A field added later must default to what runs did before it existed: workdirs written before it are read
with that default (gap_jax/workdir.py `upgraded`), so they still resume and still count as the same config.

Run: ./launch.sh train --config gap_jax/configs/default.py --workdir runs/default
(NiN MNIST variant, GAP head, on the synthetic dataset: about a minute on 2 CPU cores.)
"""

import ml_collections
from ml_collections.config_dict import placeholder

from gap_jax.data import position
from gap_jax.heads import head_arg_sections
from gap_jax.models import model_arg_sections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model and head.
  c.model = "nin_mnist"  # gap_jax.models.MODELS
  c.head = "gap"  # gap_jax.heads.HEADS
  c.head_placement = "classify_then_pool"  # or "pool_then_classify"
  # Each head's and each model's own hyper-parameters: one section per module, made from its fields with their
  # defaults (gap_jax/configs/sections.py). Only the chosen head's and model's sections are used; a value set in
  # another's is refused. E.g. --config.head_args.gem.p=4, --config.model_args.rfnet.dilation=2.
  c.head_args = head_arg_sections()
  c.model_args = model_arg_sections()
  c.dropout = 0.5  # after each pooling layer inside the model
  c.final_relu = True  # the paper's ReLU after the class-map layer
  c.padding = "zeros"  # what convolutions see beyond the border: "zeros", "circular" (wrapped), "valid" (none)
  c.kernel_init = "lecun_normal"  # gap_jax.models.output.KERNEL_INITS; "normal" is the paper's Gaussian
  c.init_std = 0.05  # its std (paper: 0.05 for every layer)
  c.compute_dtype = "float32"  # or "bfloat16": float32 parameters; on CPU fast where it has AMX (README)
  # How the CPU backend computes convolutions, bias adds and pooling (gap_jax/cpu): "auto" (oneDNN where it is
  # usable and verified, else XLA), "xla", "onednn" (an error where it is not usable), "plain". Speed only:
  # GPUs and TPUs always run the plain operations, and a workdir may change it between runs.
  c.cpu_kernels = "auto"

  # Data. Each dataset's paper defaults (preprocessing, validation, augmentation): gap_jax/data/specs.py.
  c.dataset = "synthetic"  # gap_jax.data.DATASETS: cifar10, cifar100, svhn_cropped, mnist, fashion_mnist
  c.data_source = "auto"  # "local" (files, no network), "tfds", or "auto": local where it exists, else tfds
  # "memory": the training set in device memory (each process its shard), fast for data that fit; "stream": read
  # from its files batch by batch (tfds: array_record) for data that do not. The same batches (docs/data.md).
  c.data_route = "memory"
  c.data_dir = placeholder(str)  # local files; None: $GAP_JAX_DATA_DIR, then the dataset's default folder
  c.tfds_data_dir = placeholder(str)  # tfds; None: tfds's own ($TFDS_DATA_DIR, else ~/tensorflow_datasets)
  c.train_extra = False  # svhn_cropped: also train on its 531k "extra" images (as the paper did)
  c.eval_split = "test"  # or "validation": hold out part of train, train on the rest, evaluate on it
  c.validation_per_class = placeholder(int)  # held out per class; None: the dataset's recipe (specs.py)
  c.preprocess = "auto"  # "standardize", "gcn_zca" or "lcn" (gap_jax.data.preprocess); "auto": the paper's
  c.preprocess_cache_dir = placeholder(str)  # fitted ZCA; None: $XDG_CACHE_HOME/gap_jax or ~/.cache/gap_jax
  c.crop_padding = 0  # random-crop augmentation: pad by this many pixels, crop back (0: off)
  c.flip = False  # random horizontal flips
  c.synthetic = ml_collections.ConfigDict(
      {"num_train": 2048, "num_test": 512, "image_size": 16, "num_classes": 4, "motif_size": 5, "seed": 0,
       "channels": 1})
  # gap_jax/data/arrangement.py: five identical motifs on a 3x3 grid of `cell`-pixel spacing: a layout, its
  # 180-degree turn (the same pair statistics) and an x.
  c.arrangement = ml_collections.ConfigDict(
      {"num_train": 4096, "num_test": 1024, "image_size": 32, "cell": 7, "motif": 2, "jitter": 1, "seed": 0})
  # gap_jax/data/counterexample.py: the question's 3x3 patterns (corners, edges, uniform: one mean) as blocks.
  c.counterexample = ml_collections.ConfigDict(
      {"num_train": 4096, "num_test": 1536, "image_size": 24, "min_block": 3, "max_block": 4, "noise": 16,
       "seed": 0})
  # gap_jax/data/position.py: one identical patch; the class is its quadrant (top-left or bottom-right).
  c.position = ml_collections.ConfigDict(position.DEFAULTS)
  # gap_jax/data/fashion_mnist.py: num_train trains on that many training images drawn by seed (None: all 60k).
  c.fashion_mnist = ml_collections.ConfigDict({"num_train": placeholder(int), "seed": 0})
  # gap_jax/data/shapes.py: one or more shapes of the image's class on clutter; equal_area: every class
  # covers as many pixels (no area cue).
  c.shapes = ml_collections.ConfigDict(
      {"num_train": 4096, "num_test": 1024, "image_size": 32, "max_objects": 2, "equal_area": False, "seed": 0})

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
  c.progress_every_s = 60.0  # when stdout is not a terminal (SLURM logs): a plain progress line this often
  c.eval_every_steps = placeholder(int)  # None: once per epoch
  c.eval_batch_size = 500
  c.eval_train_examples = 10_000  # train-split examples scored at the end (train accuracy/loss)
  c.checkpoint_every_steps = placeholder(int)  # None: at each evaluation
  c.checkpoints_to_keep = 3
  # (first, count), e.g. --config.profile_steps=10,5: a jax.profiler trace of steps first..first+count-1
  # (counted from 1, as in the logs) in <workdir>/profile, for TensorBoard's profile plugin; (): none.
  c.profile_steps = ()
  return c
