"""MNIST, NIN + dropout (table 4; no augmentation): the paper reports 0.47% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/nin_mnist.py --workdir runs/paper/nin_mnist
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). The paper's MNIST schedule is not given; the CIFAR one is used. 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 0.47


def get_config():
  c = recipe.get_config()
  c.dataset = "mnist"
  c.model = "nin_mnist"
  return c
