"""SVHN, NIN + dropout (table 3; train + extra, LCN): the paper reports 2.35% test error.

Run: ./launch.sh train --config gap_jax/configs/paper/nin_svhn.py --workdir runs/paper/nin_svhn
  (or all rows of its table: ./launch.sh reproduce <table>, see README "Reproducing the paper").
Recipe: gap_jax/configs/paper/recipe.py (the paper's, with the unknowns it lists). The paper's SVHN schedule is not given; the CIFAR one is used. 
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper import recipe

PAPER_TEST_ERROR = 2.35


def get_config():
  c = recipe.get_config()
  c.dataset = "svhn_cropped"
  c.model = "nin_svhn"
  c.train_extra = True
  return c
