import gzip
import struct

import numpy as np
import pytest

from gap_jax.data import fashion_mnist, load_dataset
from gap_jax.data.idx import read_idx
from gap_jax.errors import UserError


def write_idx(path, array, magic=None, gz=True):
  header = struct.pack(f">{1 + array.ndim}i", magic or (0x800 + array.ndim), *array.shape)
  raw = header + array.astype(np.uint8).tobytes()
  path.write_bytes(gzip.compress(raw) if gz else raw)


def write_fashion_mnist(folder, n_train=12, n_test=6, seed=0):
  rng = np.random.default_rng(seed)
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    img_file, lbl_file = fashion_mnist.FILES[split]
    write_idx(folder / img_file, images)
    write_idx(folder / lbl_file, labels)
    arrays[split] = (images, labels)
  return arrays


def test_idx_round_trip(tmp_path):
  a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  write_idx(tmp_path / "a.gz", a)
  np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", 3, "-"), a)
  write_idx(tmp_path / "b", a, gz=False)
  np.testing.assert_array_equal(read_idx(tmp_path / "b", 3, "-"), a)


def test_fashion_mnist_from_files(tmp_path, tiny_config):
  arrays = write_fashion_mnist(tmp_path)
  tiny_config.dataset, tiny_config.data_dir = "fashion_mnist", str(tmp_path)
  data = load_dataset(tiny_config)
  assert data.train.images.shape == (12, 28, 28, 1) and data.train.images.dtype == np.uint8
  np.testing.assert_array_equal(data.train.images[..., 0], arrays["train"][0])
  np.testing.assert_array_equal(data.test.labels, arrays["test"][1])
  assert data.num_classes == 10
  np.testing.assert_allclose(data.mean, arrays["train"][0].mean() / 255, rtol=1e-5)


def test_data_dir_from_environment(tmp_path, tiny_config, monkeypatch):
  write_fashion_mnist(tmp_path)
  monkeypatch.setenv("GAP_JAX_DATA_DIR", str(tmp_path))
  tiny_config.dataset = "fashion_mnist"
  assert len(load_dataset(tiny_config).test) == 6


@pytest.mark.parametrize("damage,message", [
    ("missing", "missing data file"),
    ("magic", "magic number"),
    ("truncated", "file has"),
    ("not_gzip", "corrupt data file"),
    ("count_mismatch", "corrupt Fashion-MNIST"),
])
def test_bad_files_give_one_clear_error(tmp_path, tiny_config, damage, message):
  write_fashion_mnist(tmp_path)
  target = tmp_path / fashion_mnist.FILES["train"][0]
  if damage == "missing":
    target.unlink()
  elif damage == "magic":
    write_idx(target, np.zeros((12, 28, 28)), magic=0x1234)
  elif damage == "truncated":
    target.write_bytes(gzip.compress(gzip.decompress(target.read_bytes())[:-100]))
  elif damage == "not_gzip":
    target.write_bytes(target.read_bytes()[:50])
  elif damage == "count_mismatch":
    write_idx(target, np.zeros((11, 28, 28)))
  tiny_config.dataset, tiny_config.data_dir = "fashion_mnist", str(tmp_path)
  with pytest.raises(UserError, match=message) as e:
    load_dataset(tiny_config)
  assert "apt-get install dataset-fashion-mnist" in str(e.value)


def test_unknown_dataset(tiny_config):
  tiny_config.dataset = "imagenet21k"
  with pytest.raises(UserError, match="unknown dataset 'imagenet21k'"):
    load_dataset(tiny_config)


def test_synthetic_is_seeded_and_shaped(tiny_config):
  a, b = load_dataset(tiny_config), load_dataset(tiny_config)
  np.testing.assert_array_equal(a.train.images, b.train.images)
  assert a.train.images.shape == (256, 16, 16, 1) and a.test.labels.shape == (128,)
  assert set(np.unique(a.train.labels)) == set(range(4))


def test_synthetic_in_colour_draws_the_motif_into_every_channel(tiny_config):
  gray = load_dataset(tiny_config)
  tiny_config.synthetic.channels = 3
  colour = load_dataset(tiny_config)
  assert colour.train.images.shape == (256, 16, 16, 3)
  np.testing.assert_array_equal(colour.train.labels, gray.train.labels)  # the same draw of classes
  # Noise is below 64 and motif pixels are 255: the bright pixels are the motif, the same in every channel.
  bright = colour.train.images == 255
  assert bright.any() and (bright == bright[..., :1]).all()
  assert ((gray.train.images == 255).sum((1, 2, 3)) == bright[..., 0].sum((1, 2))).all()  # the same motifs
