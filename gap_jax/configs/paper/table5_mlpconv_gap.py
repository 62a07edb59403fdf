"""CIFAR-10, mlpconv + GAP (table 5): the paper reports 10.41% test error. The same network and recipe as
nin_cifar10.py, named here so that `./launch.sh reproduce table5` reads as the paper's table.

Run: ./launch.sh train --config gap_jax/configs/paper/table5_mlpconv_gap.py --workdir runs/paper/table5_mlpconv_gap
  (or all rows of its table: ./launch.sh reproduce table5, see README "Reproducing the paper").
Time: 260 epochs; not yet measured on a GPU (see README for the CPU measurements and estimates).
"""

from gap_jax.configs.paper.nin_cifar10 import PAPER_TEST_ERROR, get_config  # noqa: F401
