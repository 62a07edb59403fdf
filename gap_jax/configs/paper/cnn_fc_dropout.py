"""CIFAR-10, conventional CNN + FC + dropout (section 4.6): the paper reports 15.99% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/cnn_fc_dropout.py --workdir runs/paper/cnn_fc_dropout
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). The CNN's filter sizes are not given (see gap_jax/models/cnn.py). 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 15.99


def get_config():
  c = recipe.get_config()
  c.dataset = "cifar10"
  c.model, c.head = "cnn", "fc"
  c.model_args.cnn.num_maps = 16
  c.head_args.fc.dropout = 0.5
  c.dropout = 0.0
  return c
