"""CIFAR-100, NIN + dropout (table 2; CIFAR-10 settings, not re-tuned): the paper reports 35.68% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/nin_cifar100.py --workdir runs/paper/nin_cifar100
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 35.68


def get_config():
  c = recipe.get_config()
  c.dataset = "cifar100"
  return c
