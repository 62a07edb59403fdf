"""The accelerator check (benchmarks/device_check.py): its training config is valid and CIFAR-shaped, a part
that fails is recorded beside the others' figures (exit 1), and an unknown part is refused."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import device_check  # noqa: E402

from gap_jax.data import load_dataset  # noqa: E402
from gap_jax.validate import validate_config  # noqa: E402


@pytest.mark.slow
def test_training_config_is_valid_and_cifar_shaped():
  config = device_check.training_config("bfloat16", 10)
  validate_config(config)
  data = load_dataset(config)
  assert data.train.images.shape[1:] == (32, 32, 3) and data.num_classes == 10
  assert config.model == "nin" and config.compute_dtype == "bfloat16"


def test_a_failing_part_is_recorded_and_the_others_kept(tmp_path, monkeypatch):
  def broken(quick, scratch):
    raise RuntimeError("no such device")
  monkeypatch.setattr(device_check, "PARTS", {"bench": lambda quick, scratch: {"images_per_s": 1.0},
                                              "train": broken})
  out = tmp_path / "check.json"
  assert device_check.main(["--out", str(out), "--parts", "bench,train", "--quick"]) == 1
  report = json.loads(out.read_text())
  assert report["bench"] == {"images_per_s": 1.0} and "no such device" in report["train"]["error"]
  assert report["quick"] is True and report["bench_s"] >= 0


def test_an_unknown_part_is_refused(tmp_path):
  with pytest.raises(SystemExit) as e:
    device_check.main(["--out", str(tmp_path / "x.json"), "--parts", "bench,nonsense"])
  assert e.value.code == 2


@pytest.mark.slow
def test_the_seeds_part_times_both_ways_and_writes_its_figures(tmp_path):
  """benchmarks/seeds_vmap.py through the check's own part, quick: both ways timed on RFNet, their ratio."""
  figures = device_check.seeds(True, tmp_path)
  run = figures["setups"]["rfnet_shapes"]
  assert figures["seeds"] == 3 and run["sequential_images_per_s"] > 0 and run["vmap_images_per_s"] > 0
  ratio, lo, hi = run["vmap_over_sequential"]
  assert lo <= ratio <= hi
  assert ratio == pytest.approx(run["vmap_images_per_s"] / run["sequential_images_per_s"], rel=0.5)
