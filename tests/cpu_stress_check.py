"""Run by test_cpu_stress.py in a subprocess (a crash must not take pytest with it): the real training loop
for every shipped model on 8x8 images, where 5x5 kernels and dilated 3x3 kernels exceed the maps, through
evaluations, checkpoints and a resume, with every convolution oneDNN verifies on oneDNN (cpu_kernels=onednn).
Prints "start <run>" before and "done <run>" after each, so that a crash names the run it hit."""

import sys
import tempfile

from gap_jax import compilation_cache
from gap_jax.configs import synthetic
from gap_jax.cpu import onednn
from gap_jax.train import train_and_evaluate

RUNS = {"nin": {}, "nin_mnist": {}, "cnn": {},
        **{f"rfnet_d{d}": {"model_args": {"rfnet": {"dilation": d}}} for d in (1, 2, 4, 8)}}


def config_for(run: str):
  c = synthetic.get_config()
  c.unlock()
  c.model = run.split("_d")[0]
  c.update(RUNS[run])
  c.cpu_kernels = "onednn"
  c.synthetic.update(num_train=64, num_test=32, image_size=8, motif_size=3)
  c.update(batch_size=16, num_train_steps=6, eval_every_steps=2, checkpoint_every_steps=2, eval_batch_size=16,
           eval_train_examples=32, log_every_steps=1, warmup_steps=1)
  return c


if __name__ == "__main__":
  compilation_cache.enable()  # the test session's (conftest.py): the caps and the resumes compile once
  for run in sys.argv[1:] or RUNS:
    print(f"start {run}", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
      assert train_and_evaluate(config_for(run), workdir, stop_after_steps=3) is None  # stops with a checkpoint
      results = train_and_evaluate(config_for(run), workdir)  # resumes from it
    assert results["resumed_from_step"] == 3 and results["steps"] == 6, results
    print(f"done {run}: test accuracy {results['final']['test_accuracy']:.3f}", flush=True)
  print(f"oneDNN implementations: {sorted({n for names in onednn.used() for n in names})}")
