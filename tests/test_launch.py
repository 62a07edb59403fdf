"""launch.sh's setup flags: each names an extra that pyproject.toml defines, and a wrong one is refused
before anything is installed."""

import re
import subprocess
import tomllib
from pathlib import Path

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
