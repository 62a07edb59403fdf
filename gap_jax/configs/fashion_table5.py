"""NiN table 5 (GAP vs FC vs FC + dropout) in miniature, on CPU: NiN's MNIST variant on Fashion-MNIST.

Run one row: ./launch.sh train --config gap_jax/configs/fashion_table5.py:<row> --workdir <dir>, with row
gap, fc or fc_dropout; the whole table over 3 seeds: ./launch.sh reproduce fashion_table5 --seeds 3.
The main job's recipe (Adam, cosine) for 1.5 epochs per run, so that 9 runs fit in about an hour on 2 CPU
cores. The FC rows flatten the 7x7x10 class maps into one dense layer (dropout 0.5 first for fc_dropout);
all rows keep the paper's dropout inside the network and its ReLU on the class maps.
Expect (3 seeds, 2 cores of an AMD EPYC, JAX 0.10.2, 2026-11-25, 55 min for the 9 runs;
results/reproduce/fashion_table5.md): test error gap 14.18 ± 0.44%, fc 11.80 ± 0.16%, fc_dropout 13.02 ± 0.28%.
"""

from gap_jax.configs import nin_fashion_mnist
from gap_jax.errors import UserError

ROWS = {"gap": ("gap", 0.0), "fc": ("fc", 0.0), "fc_dropout": ("fc", 0.5)}


def get_config(row: str = "gap"):
  if row not in ROWS:
    raise UserError(f"unknown row {row!r}: use one of {sorted(ROWS)} (--config gap_jax/configs/fashion_table5.py:gap)")
  c = nin_fashion_mnist.get_config()
  c.head, c.head_args.fc.dropout = ROWS[row]
  c.num_epochs = 1.5
  return c
