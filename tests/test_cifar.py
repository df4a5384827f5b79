"""CIFAR-10 subsets: class selection, the image folder, TFDS, the synthetic
stand-in and the flip augmentation."""

import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxgen.data import cifar
from jaxgen.data import pipeline

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "..", "shared", "data", "cifar10_catdog")


def _write_folder(root, counts, size=32):
  """root/split/class/i.jpg with a flat colour per (class, i)."""
  for (split, name), n in counts.items():
    d = os.path.join(root, split, name)
    os.makedirs(d, exist_ok=True)
    for i in range(n):
      colour = (cifar.CLASS_NAMES.index(name) * 20, i * 40, 128)
      Image.new("RGB", (size, size), colour).save(
          os.path.join(d, f"{i:04d}.jpg"), quality=95)
  return str(root)


def _cfg(**kw):
  c = dict(name="cifar", source="folder", root="", tfds_data_dir="",
           classes="cat,dog", res=32, flip=False, per_class=10, seed=0)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def test_resolve_classes_names_ids_and_errors():
  assert cifar.resolve_classes("cat,dog") == (3, 5)
  assert cifar.resolve_classes(" Dog , 3 ") == (5, 3)
  assert cifar.resolve_classes(("airplane", 9)) == (0, 9)
  assert cifar.resolve_classes(5) == (5,)
  assert cifar.resolve_classes("all") == tuple(range(10))
  assert cifar.resolve_classes("cat,3") == (3,)  # Duplicates dropped.
  with pytest.raises(ValueError, match="Unknown CIFAR-10 class 'kitten'.*"
                     "valid names: airplane, automobile"):
    cifar.resolve_classes("cat,kitten")
  with pytest.raises(ValueError, match="id 10 out of range"):
    cifar.resolve_classes("10")


def test_folder_class_filter_and_labels(tmp_path):
  root = _write_folder(tmp_path, {("train", "cat"): 3, ("train", "dog"): 2,
                                  ("train", "bird"): 1, ("test", "cat"): 1,
                                  ("test", "dog"): 1})
  ds = pipeline.build(_cfg(root=root), "train")
  assert len(ds.source) == 5 and ds.augment is None
  assert ds.info["classes"] == ["cat", "dog"] and ds.info["source"] == "folder"
  np.testing.assert_array_equal(ds.source.labels, [3, 3, 3, 5, 5])
  assert ds.source.images.dtype == np.uint8
  assert ds.source.images.shape == (5, 32, 32, 3)
  elem = ds.source[4]
  assert elem["image"].dtype == np.float32 and elem["image"].shape == (32, 32,
                                                                       3)
  assert 0.0 <= elem["image"].min() and elem["image"].max() <= 1.0
  assert elem["label"].dtype == np.int32 and elem["label"].shape == ()
  # The decoded colour is the one written (JPEG is lossy: a few levels).
  np.testing.assert_allclose(elem["image"][16, 16] * 255, (100, 40, 128),
                             atol=4)
  # Another subset, by id, in the given order; "auto" with a root = folder.
  birds = pipeline.build(_cfg(root=root, classes="2", source="auto"), "train")
  np.testing.assert_array_equal(birds.source.labels, [2])
  test = pipeline.build(_cfg(root=root, classes="dog,cat"), "test")
  np.testing.assert_array_equal(test.source.labels, [5, 3])


def test_folder_resizes_other_sizes(tmp_path):
  root = _write_folder(tmp_path, {("train", "cat"): 1}, size=40)
  src = cifar.load_folder(root, "train", (3,), res=16)
  assert src.images.shape == (1, 16, 16, 3)


def test_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"does not exist(.|\n)*"
                     r"download_and_prepare(.|\n)*ROOT/train/cat/\*\.jpg"):
    pipeline.build(_cfg(root=str(tmp_path / "nope")), "train")
  root = _write_folder(tmp_path, {("train", "cat"): 2})
  os.makedirs(tmp_path / "train" / "dog")
  with pytest.raises(ValueError, match="train/dog holds no images"):
    pipeline.build(_cfg(root=root), "train")
  with pytest.raises(FileNotFoundError, match="No folder for class 'frog' "
                     r"\(id 6\).*found in .*train: cat, dog"):
    pipeline.build(_cfg(root=root, classes="frog"), "train")
  with pytest.raises(FileNotFoundError, match="No 'test' split folder"):
    pipeline.build(_cfg(root=root, classes="cat"), "test")
  with pytest.raises(ValueError, match="Unknown CIFAR-10 class 'cats'"):
    pipeline.build(_cfg(root=root, classes="cats"), "train")
  with pytest.raises(ValueError, match="Unknown config.data.source 'web'"):
    pipeline.build(_cfg(root=root, source="web"), "train")


def test_synthetic_is_deterministic_per_class():
  cfg = _cfg(source="synthetic", per_class=10)
  a, b = cifar.load(cfg, "train"), cifar.load(cfg, "train")
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, [3] * 10 + [5] * 10)
  test = cifar.load(cfg, "test")
  assert len(test) == 4 and not np.array_equal(test.images[0], a.images[0])
  # Classes differ in shape/hue, so their mean images differ clearly.
  assert np.abs(a.images[:10].mean(0) - a.images[10:].mean(0)).mean() > 5
  other = cifar.load(_cfg(source="synthetic", per_class=10, seed=1), "train")
  assert not np.array_equal(other.images, a.images)


def test_flip_augment():
  image = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
  flips = [cifar.flip_augment({"image": image, "label": np.int32(3)},
                              np.random.default_rng(i)) for i in range(20)]
  flipped = [f for f in flips if not np.array_equal(f["image"], image)]
  assert 0 < len(flipped) < 20
  np.testing.assert_array_equal(flipped[0]["image"], image[:, ::-1])
  ds = pipeline.build(_cfg(source="synthetic", flip=True), "train")
  assert ds.augment is cifar.flip_augment
  assert pipeline.build(_cfg(source="synthetic", flip=True),
                        "test").augment is None


def test_tfds_not_prepared_says_how_to_get_it(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(FileNotFoundError, match=r"not prepared(.|\n)*"
                     "never downloaded(.|\n)*--datasets=cifar10"):
    pipeline.build(_cfg(source="tfds", tfds_data_dir=str(tmp_path)), "train")
  with pytest.raises(FileNotFoundError, match="found no CIFAR-10"):
    pipeline.build(_cfg(source="auto", tfds_data_dir=str(tmp_path)), "train")


def test_tfds_random_access_filters_classes(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  # mock_data serves random examples through the real TFDS data source API;
  # it does not fake the prepared-on-disk check, so that is patched too.
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared",
                      lambda self: True)
  with tfds.testing.mock_data(num_examples=60):
    src = cifar.load(_cfg(source="tfds", classes="cat,dog"), "train")
    auto = cifar.resolve_source(_cfg(source="auto"))
  assert auto == "tfds"
  assert 0 < len(src) < 60 and set(np.unique(src.labels)) <= {3, 5}
  assert src.images.dtype == np.uint8 and src.images.shape[1:] == (32, 32, 3)


@pytest.mark.skipif(not os.path.isdir(SHARED),
                    reason="optional real-data check: ../shared/data/"
                    "cifar10_catdog is absent on this machine")
def test_real_cat_dog_folder():
  src = cifar.load(_cfg(root=SHARED), "test")
  assert len(src) == 2000
  np.testing.assert_array_equal(np.bincount(src.labels), [0, 0, 0, 1000, 0,
                                                          1000])
  assert 40 < src.images.mean() < 200
