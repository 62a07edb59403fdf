"""launch.sh's setup flags: each names an extra that pyproject.toml defines, and a wrong one is refused
before anything is installed."""

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def test_every_setup_flag_is_an_extra_of_the_project():
  extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
  flags = re.search(r"\n\s*(--[\w|-]+)\) setup ", (ROOT / "launch.sh").read_text()).group(1).split("|")
  assert [f.removeprefix("--") for f in flags] == ["cuda12", "cuda13", "tpu"]
  for flag in flags:
    (requirement,) = extras[flag.removeprefix("--")]
    assert requirement.startswith(f"jax[{flag.removeprefix('--')}]"), requirement


def test_an_unknown_setup_flag_is_refused_before_installing(tmp_path):
  installed = (ROOT / ".venv" / ".installed")
  before = installed.stat().st_mtime_ns if installed.exists() else None
  done = subprocess.run([ROOT / "launch.sh", "setup", "--cuda"], capture_output=True, text=True)
  assert done.returncode == 2 and "--cuda12" in done.stderr and not done.stdout
  assert (installed.stat().st_mtime_ns if installed.exists() else None) == before


@pytest.mark.slow  # two pytest starts
def test_fast_leaves_out_the_slow_tests():
  collect = lambda *flags: subprocess.run([ROOT / "launch.sh", "test", *flags, "--collect-only",
                                           "tests/test_heads.py"], capture_output=True, text=True, cwd=ROOT)
  everything, fast = collect(), collect("--fast")
  assert everything.returncode == 0 and fast.returncode == 0, everything.stderr + fast.stderr
  assert "deselected" not in everything.stdout
  assert re.search(r"\d+/(\d+) tests collected \((\d+) deselected\)", fast.stdout), fast.stdout[-500:]
