import os
import tempfile

import jax
import pytest

from gap_jax.configs import synthetic
from gap_jax.cpu import malloc


def pytest_configure(config):
  """As every entry point does: on the CPU, glibc's malloc set for XLA's step buffers (for the test process
  and the runs it starts), by restarting pytest once with the variables, outside pytest's output capture."""
  if malloc.needs_restart():
    config.pluginmanager.getplugin("capturemanager").suspend_global_capture(in_=True)
    malloc.restart_with_settings()

# Many tests train the same tiny configs, in this process (training_setup.PROGRAMS shares their programs) and in
# the subprocesses they start, which compile them again without a persistent cache. One cache per test session (set before anything compiles) keeps the suite
# inside CI's budget on 2 cores without sharing state with the user's ~/.cache; the command-line runs that
# tests start as subprocesses use it too (gap_jax/compilation_cache.py reads the variable).
os.environ["GAP_JAX_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="gap_jax_test_xla_")
jax.config.update("jax_compilation_cache_dir", os.environ["GAP_JAX_COMPILATION_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


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
