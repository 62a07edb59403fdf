import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_four_devices_match_one_device():
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="4")
  out = subprocess.run([sys.executable, str(Path(__file__).with_name("parallel_check.py"))],
                       env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  r = json.loads(out.stdout.strip().splitlines()[-1])
  assert r["devices"] == [4, 1]
  assert r["loss_diff"] < 1e-5 and r["param_diff"] < 1e-5, r
