"""The tfds route, offline and without TensorFlow: tfds.testing.mock_data stands in for prepared data,
and write_prepared() writes genuine prepared files for the reading path. The download path is tested up
to the point where it needs TensorFlow or the network."""

import contextlib
import gzip
import io
import json
import socket
import struct
import types
from unittest import mock

import jax
import numpy as np
import PIL.Image
import pytest
import requests
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from tensorflow_datasets.core import naming

from gap_jax import parallel
from gap_jax.data import DATASETS, load_dataset, preprocess, tfds_source
from gap_jax.data.augment import augment, normalize
from gap_jax.errors import UserError
from gap_jax.training_setup import build_training_setup

TFDS_DATASETS = [name for name, spec in DATASETS.items() if spec.tfds_name]


@pytest.fixture
def config(tiny_config, tmp_path):
  tiny_config.data_source = "tfds"
  tiny_config.preprocess_cache_dir = str(tmp_path / "cache")
  tiny_config.model, tiny_config.model_args.nin.blocks = "nin", (((8, 3),), ((8, 3),))  # tiny NiN
  tiny_config.batch_size = 4
  return tiny_config


@contextlib.contextmanager
def mocked(monkeypatch, splits=None, num_examples=12, asked=None):
  """Prepared-looking tfds: random examples of each dataset's real features (`num_examples` per split),
  or the given {split: (images, labels)}. `asked` collects the splits that were read."""
  def as_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    if asked is not None:
      asked.extend(split)
    for s in split:
      if s not in splits:
        raise ValueError(f"unknown split {s}")
    return [[{"image": image, "label": np.int64(label)} for image, label in zip(*splits[s])]
            for s in split]

  # mock_data makes download_and_prepare a no-op but leaves is_prepared looking at an empty folder.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  with tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE,
                              as_data_source_fn=as_data_source if splits else None):
    yield


def balanced(n_per_class, num_classes, shape, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.tile(np.arange(num_classes), n_per_class)
  return rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8), labels


def png(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
  return buffer.getvalue()


def write_prepared(data_dir, name, splits, file_format="array_record"):
  """Genuine prepared tfds files (array_record shards, dataset_info.json, features.json) holding
  {split: (images, labels)}, as download_and_prepare would leave them. tfds encodes images with
  TensorFlow, so the (lossless) PNGs come from PIL here; reading them back needs no TensorFlow."""
  builder = tfds.builder(name, data_dir=str(data_dir), file_format="array_record")
  builder.data_path.mkdir(parents=True)
  infos = []
  with mock.patch.object(tfds.features.Image, "encode_example", lambda self, image: png(image)):
    for split, (images, labels) in splits.items():
      template = naming.ShardedFileTemplate(data_dir=builder.data_path, dataset_name=name, split=split,
                                            filetype_suffix="array_record")
      path = template.sharded_filepath(shard_index=0, num_shards=1)
      writer = array_record_module.ArrayRecordWriter(str(path), "group_size:1")
      for image, label in zip(images, labels):
        example = {"image": image, "label": int(label)}
        if name in ("cifar10", "cifar100", "svhn_cropped"):
          example["id"] = f"{split}_{len(infos)}"
        if name == "cifar100":
          example["coarse_label"] = 0
        writer.write(builder.info.features.serialize_example(example))
      writer.close()
      infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[len(labels)], num_bytes=0,
                                       filename_template=template))
  builder.info.set_splits(tfds.core.SplitDict(infos))
  builder.info.write_to_directory(builder.data_path)
  if file_format != "array_record":  # as if tfds.load had prepared it
    info = builder.data_path / "dataset_info.json"
    info.write_text(info.read_text().replace('"array_record"', f'"{file_format}"'))


_SETUPS = {}  # by (image shape, dtype, classes, examples): compiling dominates these tests


def one_training_step(config, data) -> float:
  """Loss of one step of the run's own set-up on `data`, compiled once for data of this shape (data are
  arguments, so one compiled step serves every dataset of the shape)."""
  key = (data.image_shape, data.train.images.dtype, data.num_classes, len(data.train))
  if key not in _SETUPS:
    setup = build_training_setup(config, data)
    _SETUPS[key] = setup, setup.initial_state()
  setup, state = _SETUPS[key]
  put = lambda a: parallel.per_device(a, setup.mesh)  # the training set as the step takes it
  order = setup.epoch_order(jax.random.key(1), 0)
  state = jax.tree.map(lambda x: x.copy(), state)  # the step donates its state
  _, metrics = setup.train_step(state, put(data.train.images), put(data.train.labels), order, jax.random.key(2))
  return float(metrics["loss"])


# One dataset in the quick loop (-m "not slow"), every one in the full suite: the route is the same.
@pytest.mark.parametrize("name", [n if n == "mnist" else pytest.param(n, marks=pytest.mark.slow)
                                  for n in TFDS_DATASETS])
def test_every_dataset_loads_with_its_defaults_and_trains_a_step(name, config, monkeypatch):
  spec = DATASETS[name]
  if spec.preprocess == "gcn_zca":  # a 3072-d eigh takes ~20 s on 2 cores: fit_zca is tested on small data
    d = int(np.prod(spec.image_shape))
    identity = (np.zeros(d, np.float32), np.eye(d, dtype=np.float32))
    monkeypatch.setattr(preprocess, "fit_zca", lambda x, b: identity)
  config.dataset = name
  with mocked(monkeypatch, num_examples=12):
    data = load_dataset(config)
  assert data.preprocess == spec.preprocess and data.eval_split == "test"
  assert data.train.images.shape == data.test.images.shape == (12, *spec.image_shape)
  want = np.uint8 if spec.preprocess == "standardize" else np.float32
  assert data.train.images.dtype == want and data.train.labels.dtype == np.int32
  assert 0 <= data.train.labels.min() and data.train.labels.max() < spec.num_classes == data.num_classes
  assert data.mean.shape == data.std.shape == (spec.image_shape[-1],)
  if want == np.float32:  # preprocessed on the host: normalize() must leave it alone
    np.testing.assert_array_equal(normalize(data.train.images, data.mean, data.std), data.train.images)
  assert np.isfinite(one_training_step(config, data))


def test_validation_is_held_out_of_train_and_test_is_never_read(config, monkeypatch):
  config.dataset, config.eval_split, config.validation_per_class = "mnist", "validation", 2
  config.preprocess = "standardize"
  splits = {"train": balanced(5, 10, (28, 28, 1)), "test": balanced(1, 10, (28, 28, 1), seed=1)}
  asked = []
  with mocked(monkeypatch, splits, asked=asked):
    data = load_dataset(config)
  assert asked == ["train"], "a validation run must not read the test split"
  assert data.eval_split == "validation" and len(data.test) == 20 and len(data.train) == 30
  assert np.bincount(data.test.labels).tolist() == [2] * 10
  everything = {img.tobytes() for img in splits["train"][0]}
  held, kept = ({img.tobytes() for img in s.images} for s in (data.test, data.train))
  assert held | kept == everything and not held & kept
  with mocked(monkeypatch, splits):
    np.testing.assert_array_equal(load_dataset(config).test.images, data.test.images)  # same every run
  config.eval_split = "test"
  with mocked(monkeypatch, splits):
    full = load_dataset(config)
  assert len(full.train) == 50 and len(full.test) == 10 and full.eval_split == "test"


def test_svhn_validation_recipe_takes_from_train_and_extra(config, monkeypatch):
  config.dataset, config.eval_split, config.train_extra = "svhn_cropped", "validation", True
  config.preprocess = "standardize"
  splits = {"train": balanced(401, 10, (32, 32, 3)), "extra": balanced(202, 10, (32, 32, 3), seed=1),
            "test": balanced(1, 10, (32, 32, 3), seed=2)}
  with mocked(monkeypatch, splits):
    data = load_dataset(config)
  assert len(data.test) == 10 * (400 + 200) and len(data.train) == 10 * (1 + 2)
  config.train_extra = False  # without extra, the recipe's train part only
  with mocked(monkeypatch, splits):
    data = load_dataset(config)
  assert len(data.test) == 4000 and len(data.train) == 10


def write_idx(path, array):
  header = struct.pack(f">{1 + array.ndim}i", 0x800 + array.ndim, *array.shape)
  path.write_bytes(gzip.compress(header + array.tobytes()))


@pytest.mark.parametrize("method,eval_split", [("standardize", "test"), ("gcn_zca", "validation")])
def test_idx_and_tfds_routes_give_identical_batches(config, monkeypatch, tmp_path, method, eval_split):
  arrays = {"train": balanced(4, 10, (28, 28, 1)), "test": balanced(1, 10, (28, 28, 1), seed=1)}
  for split, prefix in (("train", "train"), ("test", "t10k")):
    write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", arrays[split][0][..., 0])
    write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", arrays[split][1].astype(np.uint8))
  config.update(dataset="fashion_mnist", data_dir=str(tmp_path), preprocess=method, eval_split=eval_split,
                validation_per_class=1)
  config.data_source = "local"
  local = load_dataset(config)
  write_prepared(tmp_path / "tfds", "fashion_mnist", arrays)
  config.data_source, config.tfds_data_dir = "tfds", str(tmp_path / "tfds")
  via_tfds = load_dataset(config)
  for a, b in ((local.train, via_tfds.train), (local.test, via_tfds.test)):
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)
  np.testing.assert_array_equal(local.mean, via_tfds.mean)
  idx = np.array([3, 0, 7, 5])
  batch = lambda d: augment(jax.random.key(0), normalize(d.train.images[idx], d.mean, d.std), 2, True)
  np.testing.assert_array_equal(batch(local), batch(via_tfds))


@pytest.mark.slow
def test_train_and_evaluate_records_the_evaluated_split(config, monkeypatch, tmp_path):
  from gap_jax.train import train_and_evaluate
  config.update(dataset="mnist", eval_split="validation", validation_per_class=1, num_train_steps=2,
                eval_every_steps=2, eval_batch_size=10, eval_train_examples=10)  # one evaluate compile
  with mocked(monkeypatch, {"train": balanced(3, 10, (28, 28, 1))}):
    results = train_and_evaluate(config, tmp_path / "run")
  on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
  assert results["evaluated_split"] == on_disk["evaluated_split"] == "validation"


@pytest.mark.parametrize("field,value,message", [
    ("dataset", "imagenet21k", "unknown dataset 'imagenet21k'"),
    ("data_source", "ftp", "unknown data_source 'ftp'"),
    ("data_source", "local", "has no 'local' source"),
    ("preprocess", "pca", "unknown preprocess 'pca'"),
    ("eval_split", "dev", "unknown eval_split 'dev'"),
    ("train_extra", True, "no extra training split"),
    ("validation_per_class", 9, "cannot hold out 9 examples of class 0"),
])
def test_bad_data_fields_give_clear_errors(config, monkeypatch, field, value, message):
  config.dataset, config.eval_split, config.preprocess = "cifar10", "validation", "standardize"
  config.validation_per_class = 1
  config[field] = value
  with mocked(monkeypatch, {"train": balanced(3, 10, (32, 32, 3))}), pytest.raises(UserError, match=message):
    load_dataset(config)


def test_a_dataset_without_a_recipe_needs_validation_per_class(tiny_config):
  tiny_config.eval_split = "validation"
  with pytest.raises(UserError, match="'synthetic' has no validation recipe"):
    load_dataset(tiny_config)
  tiny_config.validation_per_class = 8
  data = load_dataset(tiny_config)
  assert len(data.test) == 32 and len(data.train) == 256 - 32 and data.eval_split == "validation"


def test_prepared_data_of_the_wrong_shape(config, monkeypatch):
  config.dataset, config.preprocess = "cifar10", "standardize"
  with mocked(monkeypatch, {"train": balanced(1, 10, (28, 28, 1)), "test": balanced(1, 10, (28, 28, 1))}):
    with pytest.raises(UserError, match=r"expected \(32, 32, 3\)"):
      load_dataset(config)



def test_real_prepared_files_are_read_exactly_without_tensorflow(config, tmp_path):
  arrays = {"train": balanced(2, 10, (32, 32, 3)), "test": balanced(1, 10, (32, 32, 3), seed=1)}
  write_prepared(tmp_path, "cifar10", arrays)
  config.update(dataset="cifar10", tfds_data_dir=str(tmp_path), preprocess="standardize")
  data = load_dataset(config)
  np.testing.assert_array_equal(data.train.images, arrays["train"][0])
  np.testing.assert_array_equal(data.test.labels, arrays["test"][1])


def test_data_prepared_in_another_format_says_what_to_do(config, tmp_path):
  write_prepared(tmp_path, "mnist", {"train": balanced(1, 10, (28, 28, 1))}, file_format="tfrecord")
  config.update(dataset="mnist", tfds_data_dir=str(tmp_path))
  with pytest.raises(UserError, match="cannot be read by random access.*gap_jax.data.prepare mnist"):
    load_dataset(config)


def test_prepared_data_missing_a_split_says_which(config, tmp_path):
  write_prepared(tmp_path, "mnist", {"train": balanced(1, 10, (28, 28, 1))})
  config.update(dataset="mnist", tfds_data_dir=str(tmp_path))
  with pytest.raises(UserError, match=r"has no split 'test', only \['train'\]"):
    load_dataset(config)


def test_unprepared_data_without_tensorflow_says_how_to_get_it(config, monkeypatch, tmp_path):
  """The real tfds builder on an empty data dir, nothing mocked but the missing package."""
  monkeypatch.setattr(tfds_source, "missing_packages", lambda: ["tensorflow"])
  config.dataset, config.tfds_data_dir = "cifar10", str(tmp_path / "tfds")
  with pytest.raises(UserError, match=r"not prepared in .*tensorflow, which is not installed.*"
                     r"pip install -e \.\[prepare\]"
                     r".*python -m gap_jax.data.prepare cifar10 --data_dir"):
    load_dataset(config)


def fake_builder(download=None):
  calls = []
  def download_and_prepare(download_config):
    assert not download_config.try_download_gcs
    calls.append("download")
    if download:
      raise download
  return types.SimpleNamespace(
      is_prepared=lambda: False, data_dir_root="/data/tfds", download_and_prepare=download_and_prepare,
      url_infos={"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz": None}), calls


def test_no_network_fails_fast_and_clearly(monkeypatch):
  monkeypatch.setattr(tfds_source, "missing_packages", lambda: [])
  monkeypatch.setattr(tfds_source, "unreachable_hosts", lambda urls: ["www.cs.toronto.edu"])
  builder, calls = fake_builder()
  with pytest.raises(UserError, match=r"no network \(cannot reach www.cs.toronto.edu\).*pip install"):
    tfds_source.ensure_prepared(builder, "cifar10", None)
  assert calls == [], "no download may start without network"
  monkeypatch.setattr(tfds_source, "unreachable_hosts", lambda urls: [])
  builder, calls = fake_builder(download=requests.exceptions.ConnectionError("Name or service not known"))
  with pytest.raises(UserError, match="the download failed .ConnectionError"):
    tfds_source.ensure_prepared(builder, "cifar10", None)
  builder, calls = fake_builder()
  tfds_source.ensure_prepared(builder, "cifar10", None)
  assert calls == ["download"]


def test_unreachable_hosts_probes_each_host_once():
  listening = socket.socket()
  listening.bind(("127.0.0.1", 0))
  listening.listen()
  closed = socket.socket()
  closed.bind(("127.0.0.1", 0))
  closed_port = closed.getsockname()[1]
  closed.close()
  open_port = listening.getsockname()[1]
  try:
    urls = [f"http://127.0.0.1:{open_port}/a", f"http://127.0.0.1:{open_port}/b"]
    assert tfds_source.unreachable_hosts(urls) == []
    assert tfds_source.unreachable_hosts([f"http://127.0.0.1:{closed_port}/a"], timeout=2) == ["127.0.0.1"]
  finally:
    listening.close()
