"""glibc's malloc settings apply where JAX computes on the CPU, and only there."""

import os
import subprocess
import sys

from gap_jax.cpu import malloc

PROBE = ("from gap_jax.cpu import malloc; malloc.restart_with_settings(); import os, sys; "
         "print(os.environ.get('MALLOC_MMAP_MAX_'), sys.argv[1:])")


def _probe(**env):
  clean = {k: v for k, v in os.environ.items() if k not in malloc.SETTINGS and k != "JAX_PLATFORMS"}
  done = subprocess.run([sys.executable, "-c", PROBE, "arg"], capture_output=True, text=True, timeout=120,
                        env={**clean, **env})
  assert done.returncode == 0, done.stderr[-2000:]
  return done.stdout.strip()


def test_a_cpu_process_restarts_once_with_the_settings_and_its_arguments():
  assert _probe(JAX_PLATFORMS="cpu") == "0 ['arg']"


def test_an_accelerator_process_or_a_users_own_setting_is_left_alone():
  assert _probe(JAX_PLATFORMS="cuda") == "None ['arg']"
  assert _probe(JAX_PLATFORMS="tpu,cpu") == "None ['arg']"
  assert _probe(JAX_PLATFORMS="cpu", MALLOC_ARENA_MAX="4") == "None ['arg']"  # the user's choice stands


def test_the_test_process_itself_runs_with_them():
  if malloc.computes_on_cpu():
    assert malloc.is_set()
