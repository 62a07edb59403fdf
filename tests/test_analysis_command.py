"""The analyze command on a tiny trained workdir, and its one-line errors."""

import json
import shutil
import subprocess
import sys

import pytest

from gap_jax.train import train_and_evaluate


def analyze(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "gap_jax.analysis", *args], capture_output=True, text=True,
                        timeout=300)


@pytest.mark.slow
def test_analyze_writes_analysis_json_and_figures(tmp_path, tiny_config):
  workdir = tmp_path / "run"
  train_and_evaluate(tiny_config, workdir)
  done = analyze("--workdir", str(workdir), "--loc_examples", "64", "--erf_examples", "8")
  assert done.returncode == 0, done.stderr
  assert "analysis.json" in done.stdout
  result = json.loads((workdir / "analysis.json").read_text())
  assert result["step"] == tiny_config.num_train_steps and result["num_examples"] == 128
  assert result["class_maps"]["shape"] == [4, 4, 4]
  assert set(result["map_stats"]["present"]) >= {"hoyer", "gini", "peak_to_mean", "frac_above_tau"}
  assert result["receptive_field"]["class_map"]["size"] == 35  # the MNIST variant, on 16x16 inputs
  erf = result["effective_receptive_field"]
  assert erf["num_inputs"] == 8 and {"trained", "init"} <= set(erf)
  loc = result["localization"]
  assert loc["num_images"] == 64 and loc["ground_truth"].startswith("synthetic")
  for key in ("max_box_acc", "max_box_acc_v2", "pxap", "cam20_box_acc"):
    assert 0 <= loc[key] <= 100, key
  assert set(result["figures"]) == {"class_maps.png", "erf.png", "fraction_above_tau.png",
                                    "box_acc_vs_threshold.png"}
  for name in result["figures"]:
    assert (workdir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

  no_checkpoint = tmp_path / "no_checkpoint"
  no_checkpoint.mkdir()
  shutil.copy(workdir / "config.json", no_checkpoint / "config.json")
  failed = analyze("--workdir", str(no_checkpoint))
  assert failed.returncode == 2 and failed.stderr.strip().count("\n") == 0
  assert "no checkpoint" in failed.stderr, failed.stderr


def test_missing_workdir_is_one_clear_line(tmp_path):
  failed = analyze("--workdir", str(tmp_path / "nowhere"))
  assert failed.returncode == 2
  expected = f"error: no such workdir {tmp_path / 'nowhere'}: pass the --workdir of a training run"
  assert failed.stderr.strip() == expected
