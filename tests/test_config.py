"""Every config field does what it says or is refused: each head and model has its own section
(head_args.<head>, model_args.<model>), set from the command line; a value in a section the run does not use
is refused; a workdir written with the old flat head_args/model_args still loads; the command line reports
its own mistakes in one line, prints the resolved config, and shows a config file's bug as a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections import config_flags

from gap_jax.configs import default
from gap_jax.errors import UserError
from gap_jax.models import build_model
from gap_jax.train import train_and_evaluate
from gap_jax.trained import load_trained
from gap_jax.validate import validate_config
from gap_jax.workdir import stored_config_differences

ROOT = Path(__file__).resolve().parents[1]


def parse(monkeypatch, *overrides):
  """The config the command line `--config=default.py <overrides>` gives (config_flags reads sys.argv)."""
  argv = ["prog", "--config=gap_jax/configs/default.py", *overrides]
  monkeypatch.setattr("sys.argv", argv)
  flag_values = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=flag_values)
  flag_values(argv)
  return flag_values.config


def conv_widths(model, size=8):
  """Output channels of each convolution, in order, from the parameter shapes."""
  params = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32))
  return [p["kernel"].shape[-1] for name, p in params["params"].items() if name.startswith("Conv")]


def test_rfnet_fields_and_its_dilations_come_from_the_command_line(monkeypatch):
  c = parse(monkeypatch, "--config.model=rfnet", "--config.model_args.rfnet.dilations=(1,2,4)",
            "--config.model_args.rfnet.width=8")
  model = build_model(c, 3)
  assert model.rates == (1, 2, 4) and conv_widths(model) == [8, 8, 8]
  c = parse(monkeypatch, "--config.model=rfnet", "--config.model_args.rfnet.dilation=2",
            "--config.model_args.rfnet.depth=3")
  assert build_model(c, 3).rates == (2, 2, 2)


def test_nin_blocks_come_from_the_command_line(monkeypatch):
  c = parse(monkeypatch, "--config.model_args.nin_mnist.blocks=((8,3),(6,1)),((5,3),)")
  assert conv_widths(build_model(c, 3)) == [8, 6, 5]


def test_only_the_chosen_heads_section_reaches_the_model(monkeypatch):
  c = parse(monkeypatch, "--config.head=gem", "--config.head_args.gem.p=5")
  assert build_model(c, 3).head_args == {"p": 5.0, "eps": 1e-6, "learn_p": True}


@pytest.mark.parametrize("overrides,refused", [
    (["--config.head=gem", "--config.head_args.lse.r=5"],
     r"head_args.lse.r=5.0 is set but head is 'gem', where it would do nothing: gem takes p, eps, learn_p"),
    (["--config.head_args.fc.dropout=0.5"], "head_args.fc.dropout=0.5 is set but head is 'gap'.*gap takes no arg"),
    (["--config.model_args.rfnet.dilation=2"],
     "model_args.rfnet.dilation=2 is set but model is 'nin_mnist'.*nin_mnist takes blocks"),
])
def test_a_value_in_a_section_the_run_does_not_use_is_refused(monkeypatch, overrides, refused):
  with pytest.raises(UserError, match=refused):
    validate_config(parse(monkeypatch, *overrides))


def test_another_section_at_its_defaults_is_accepted(monkeypatch):
  validate_config(parse(monkeypatch, "--config.head=gem", "--config.head_args.lse.r=10",
                        "--config.model_args.rfnet.dilation=1"))


def test_a_field_the_chosen_model_lacks_is_refused():
  c = default.get_config()
  c.model = "rfnet"
  c.model_args.rfnet.unlock()
  c.model_args.rfnet.blocks = ((8, 3),)
  with pytest.raises(UserError, match="model_args.rfnet.blocks is not a field of model 'rfnet': rfnet takes dep"):
    build_model(c, 3)


def test_a_config_that_sets_the_flat_head_args_of_old_is_refused():
  c = default.get_config()  # unlocked, as a config file's: the old `c.head_args.dropout = 0.5` adds a field
  c.head_args.dropout = 0.5
  with pytest.raises(UserError, match=r"head_args.dropout=0.5: each head's fields are in its own section, "
                                      r"head_args.<head>.<field> \(dropout is a field of fc\)"):
    validate_config(c)


# ---- Workdirs written before the per-module sections. ----

# default.py's head_args before the sections: every head's fields in one flat dict.
OLD_FLAT_HEAD_ARGS = {"dropout": 0.0, "r": 10.0, "learn_r": False, "p": 3.0, "eps": 1e-6, "learn_p": True,
                      "k_max": 0.2, "k_min": 0.2, "alpha": 0.7, "decay": 0.996, "num_heads": 8, "mlp_dim": None,
                      "embed_dim": 500, "attention_dim": 128}


def old_form(config, head_args: dict, model_args: dict) -> str:
  """config.json as it was written before the sections: flat head_args and model_args."""
  stored = json.loads(config.to_json_best_effort())
  stored["head_args"], stored["model_args"] = {**OLD_FLAT_HEAD_ARGS, **head_args}, model_args
  return json.dumps(stored, indent=2)


def rfnet_gem(c=None, p=4.0):
  """A one-layer RFNet with head gem (p as given): `c` (default.py's config if None), changed."""
  c = c or default.get_config()
  c.model, c.head = "rfnet", "gem"
  c.model_args.rfnet.update(depth=1, width=4)
  c.head_args.gem.p = p
  return c


def test_an_old_flat_config_json_reads_as_the_same_config(tmp_path):
  # lse's r = 5 did nothing under head gem then: it does not make the config differ.
  (tmp_path / "config.json").write_text(old_form(rfnet_gem(), {"p": 4.0, "r": 5.0}, {"depth": 1, "width": 4}))
  assert stored_config_differences(tmp_path, rfnet_gem()) == []
  assert stored_config_differences(tmp_path, rfnet_gem(p=3.0)) == ["head_args.gem.p: 4.0 -> 3.0"]


def test_a_field_added_since_reads_as_its_default(tmp_path):
  # A workdir written before `synthetic.channels` and the `position` section existed is the same config...
  stored = json.loads(default.get_config().to_json_best_effort())
  del stored["synthetic"]["channels"], stored["position"]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  assert stored_config_differences(tmp_path, default.get_config()) == []
  # ... unless the run now asks for something else than the default.
  changed = default.get_config()
  changed.synthetic.channels = 3
  assert stored_config_differences(tmp_path, changed) == ["synthetic.channels: 1 -> 3"]


def test_another_datasets_section_does_not_make_a_run_differ(tmp_path):
  stored = default.get_config()  # trains on synthetic
  (tmp_path / "config.json").write_text(stored.to_json_best_effort())
  changed = default.get_config()
  changed.arrangement.cell = 9  # nothing a synthetic run computes reads it
  assert stored_config_differences(tmp_path, changed) == []
  changed.dataset = "arrangement"  # now it trains on it
  assert "arrangement.cell: 7 -> 9" in stored_config_differences(tmp_path, changed)


def test_an_old_workdir_loads_with_its_head_and_model_args(tmp_path, tiny_config):
  config = rfnet_gem(tiny_config)
  assert train_and_evaluate(config, tmp_path, stop_after_steps=1) is None  # a checkpoint, no evaluation
  saved = load_trained(tmp_path)
  (tmp_path / "config.json").write_text(old_form(config, {"p": 4.0, "r": 5.0}, {"depth": 1, "width": 4}))
  old = load_trained(tmp_path)
  assert old.config.head_args.gem.p == 4.0 and old.config.head_args.lse.r == 10.0
  assert (old.model.depth, old.model.width, old.model.head_args["p"]) == (1, 4, 4.0)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), saved.state.params, old.state.params))


# ---- The command line. ----

def main(*args: str, config: str = "gap_jax/configs/default.py") -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "gap_jax.main", "--config", config, "--workdir", "unused", *args],
                        capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_an_unknown_field_is_one_line_naming_its_whole_path():
  done = main("--config.head_args.r=5")
  assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
  assert done.stderr.startswith("error: unknown config field head_args.r (each head and model has its own section")


def test_the_resolved_config_is_printed_before_the_run_starts():
  done = main("--config.head=gem", "--config.learning_rate=-1")
  assert done.returncode == 2 and "error: learning_rate=-1.0 must be positive" in done.stderr
  printed = done.stdout.splitlines()
  assert printed[0] == "config:" and "  learning_rate = -1.0" in printed and "  head_args.gem.p = 3.0" in printed
  assert not [line for line in printed if "head_args.lse" in line or "model_args.rfnet" in line]  # not chosen


def test_a_bug_in_a_config_file_shows_its_traceback(tmp_path):
  config = tmp_path / "typo.py"
  config.write_text("from gap_jax.configs import default\n\n\ndef get_config():\n  c = default.get_config()\n"
                    "  c.synthetc.num_train = 512  # no such section: AttributeError\n  return c\n")
  done = main(config=str(config))
  assert done.returncode == 1 and "unknown config field" not in done.stderr
  assert "Traceback" in done.stderr and f'"{config}", line 6, in get_config' in done.stderr
  assert done.stderr.rstrip().splitlines()[-1].startswith("AttributeError")


def test_a_config_files_own_refusal_is_one_line():
  done = main(config="gap_jax/configs/fashion_table5.py:nope")
  assert done.returncode == 2 and done.stderr.startswith("error: unknown row 'nope'")
  assert "Traceback" not in done.stderr


def test_the_data_route_and_speed_fields_leave_a_config_the_same_and_the_recipe_does_not():
  """A run may move between the in-memory and the streamed route (they give the same batches), or change its
  kernels or progress interval, and still count as the same run; a change of recipe is a different run."""
  from gap_jax.workdir import config_differences
  old, new = default.get_config(), default.get_config()
  new.data_route, new.cpu_kernels, new.progress_every_s = "stream", "xla", 5.0
  assert config_differences(old.to_dict(), new.to_dict()) == []
  new.learning_rate = old.learning_rate * 2
  assert config_differences(old.to_dict(), new.to_dict()) == [f"learning_rate: {old.learning_rate!r} -> "
                                                              f"{new.learning_rate!r}"]
