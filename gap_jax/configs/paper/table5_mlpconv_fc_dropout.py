"""CIFAR-10, mlpconv + FC + dropout (table 5, unconfirmed): the paper reports 10.88% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/table5_mlpconv_fc_dropout.py --workdir runs/paper/table5_mlpconv_fc_dropout
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). How the paper's FC layers sat on the mlpconv layers is not given: here the 8x8x10 class maps are flattened, dropout 0.5, one dense layer. 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 10.88


def get_config():
  c = recipe.get_config()
  c.dataset = "cifar10"
  c.head = "fc"
  c.head_args.fc.dropout = 0.5
  return c
