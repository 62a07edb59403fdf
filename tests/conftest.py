import pytest

from gap_jax.configs import synthetic


@pytest.fixture
def tiny_config():
  """The synthetic config, shrunk so a run takes seconds."""
  c = synthetic.get_config()
  c.unlock()
  c.synthetic.num_train, c.synthetic.num_test = 256, 128
  c.num_train_steps = 8
  c.eval_every_steps = 4
  c.eval_batch_size = 64
  c.eval_train_examples = 64
  c.log_every_steps = 2
  return c
