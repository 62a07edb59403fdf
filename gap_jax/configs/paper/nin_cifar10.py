"""CIFAR-10, NIN + dropout (table 1): the paper reports 10.41% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/nin_cifar10.py --workdir runs/paper/nin_cifar10
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 10.41


def get_config():
  c = recipe.get_config()
  c.dataset = "cifar10"
  return c
