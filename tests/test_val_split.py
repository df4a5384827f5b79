"""The stratified validation split of paired folders (jaxgen/data/paired.py)
through PairedFolder, the pix2pix and CycleGAN data sources and configs."""

import os

import numpy as np
from PIL import Image
import pytest

from jaxgen import configlib
from jaxgen.data import paired
from jaxgen.data import paired_datasets
from jaxgen.data import pipeline
from jaxgen.data import unpaired

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A CUFS-like layout: two name patterns, val/ all of one of them.
CUHK = [f"cuhk_{i:02d}" for i in range(20)]
AR = [f"ar_{i:03d}" for i in range(40)]


def _write(root, split, names):
  for kind, mode in (("sketches", "L"), ("photos", "RGB")):
    folder = os.path.join(root, split, kind)
    os.makedirs(folder, exist_ok=True)
    for name in names:
      value = sum(map(ord, name)) % 256  # Tells the images apart.
      Image.new(mode, (12, 10), value if mode == "L" else (value, 0, 0)).save(
          os.path.join(folder, name + ".png"))


def _cufs_like(root):
  _write(root, "train", CUHK + AR[:30])
  _write(root, "val", AR[30:])
  return str(root)


def _names(pairs):
  return [p.name for p in pairs]


def test_subset_of_name_patterns_and_fallback():
  got = {n: paired.subset_of(n) for n in (
      "cuhk_07", "ar_012", "F2-005-01", "M.12", "0042", "alice", "x")}
  assert got == {"cuhk_07": "cuhk", "ar_012": "ar", "F2-005-01": "f",
                 "M.12": "m", "0042": "", "alice": "", "x": ""}


def test_stratified_split_holds_out_every_subset(tmp_path):
  root = _cufs_like(tmp_path / "a")
  s = paired.resolve_splits(root, 0.2, val_split="stratified")
  train, val = _names(s["train"]), _names(s["val"])
  # round(0.2 * 20) CUHK and round(0.2 * 40) AR pairs: every subset held out
  # at the fraction, though val/ holds AR pairs only.
  assert paired.subset_counts(s["val"]) == {"ar": 8, "cuhk": 4}
  assert paired.subset_counts(s["train"]) == {"ar": 32, "cuhk": 16}
  assert not set(train) & set(val)
  assert sorted(train + val) == sorted(CUHK + AR)
  assert _names(s["test"]) == val  # No test/ folder: test is val.
  # The folder's val/ is not what is held out: some AR pairs of val/ train.
  assert set(AR[30:]) & set(train)
  # Deterministic, by name alone: the same on a second call, with another
  # data seed, and with the same pairs spread differently over the folders.
  assert paired.resolve_splits(root, 0.2, seed=7, val_split="stratified") == s
  other = tmp_path / "b"
  _write(other, "train", CUHK[:5] + AR)
  _write(other, "val", CUHK[5:])
  moved = paired.resolve_splits(str(other), 0.2, val_split="stratified")
  assert _names(moved["val"]) == val and _names(moved["train"]) == train
  # The folder split is unchanged by the option's existence.
  folder = paired.resolve_splits(root, 0.2)
  assert _names(folder["val"]) == AR[30:]


def test_one_subset_fallback_and_test_folder_kept(tmp_path):
  names = [f"{i:04d}" for i in range(10)] + ["anna", "bob"]
  _write(tmp_path, "train", names[:9])
  _write(tmp_path, "val", names[9:])
  _write(tmp_path, "test", ["t1", "t2"])
  s = paired.resolve_splits(str(tmp_path), 0.25, val_split="stratified")
  assert paired.subset_counts(s["val"]) == {"": 3}  # round(0.25 * 12).
  assert len(s["train"]) == 9
  assert _names(s["test"]) == ["t1", "t2"]


def test_bad_value_and_a_name_in_train_and_val(tmp_path):
  _write(tmp_path, "train", ["a1", "a2"])
  _write(tmp_path, "val", ["a2"])
  with pytest.raises(ValueError, match=r"config.data.val_split 'random'; "
                     r"valid: \('folder', 'stratified'\)"):
    paired.resolve_splits(str(tmp_path), val_split="random")
  with pytest.raises(ValueError, match="'a2' is in both train/ and val/"):
    paired.resolve_splits(str(tmp_path), val_split="stratified")


def test_pix2pix_and_cyclegan_sources_use_the_same_split(tmp_path):
  root = _cufs_like(tmp_path)
  data = paired_datasets.data_config("paired_folder", 8, root,
                                     val_split="stratified", val_fraction=0.2)
  want = paired.resolve_splits(root, 0.2, val_split="stratified")
  train = pipeline.build(data, "train")
  test = pipeline.build(data, "test")
  assert len(train.source) == 48 and len(test.source) == 12
  assert test.info["subsets"] == {"ar": 8, "cuhk": 4}
  first = np.asarray(Image.open(want["val"][0].photo).resize(
      (8, 8), Image.Resampling.BICUBIC), np.float32) / 255 * 2 - 1
  np.testing.assert_allclose(test.source[0]["photo"], first, atol=1e-5)

  cfg = unpaired.data_config("unpaired_folders", 8, root=root,
                             val_split="stratified", val_fraction=0.2)
  assert len(pipeline.build(cfg, "train").source) == 48
  cyc_test = pipeline.build(cfg, "test")
  assert len(cyc_test.source) == 12
  np.testing.assert_allclose(cyc_test.source[0]["a"], first, atol=1e-5)
  cfg.val_split = "bad"
  with pytest.raises(ValueError, match="config.data.val_split 'bad'"):
    pipeline.build(cfg, "test")


def test_config_options():
  for name in ("cgan", "cyclegan"):
    spec = os.path.join(ROOT, "configs", f"{name}.py")
    cufs = configlib.load_config_file(spec + ":cufs")
    assert cufs.data.root == configlib.shared_data(spec, "cufs")
    assert (cufs.data.val_split, cufs.data.val_fraction) == ("stratified",
                                                             0.15)
    assert configlib.load_config_file(
        spec + ":cufs,split=folder").data.val_split == "folder"
    assert configlib.load_config_file(
        spec + ":root=/x").data.val_split == "folder"
    assert configlib.load_config_file(spec + ":tiny").data.val_split == (
        "folder")
    with pytest.raises(ValueError, match="config.data.val_split 'x'"):
      configlib.load_config_file(spec + ":root=/x,split=x")
    with pytest.raises(ValueError, match="'cufs'"):
      configlib.load_config_file(spec + ":tiny,cufs")
  # pix2pix on CUFS evaluates every epoch, but writes grids and the latest
  # checkpoint every 200 steps (not at each of its 22-step epochs' ends),
  # and uses DiffAugment (the measured recipe).
  cufs = configlib.load_config_file(
      os.path.join(ROOT, "configs", "cgan.py:cufs"))
  assert cufs.gan.diffaug == "color,translation,cutout"
  assert not configlib.load_config_file(
      os.path.join(ROOT, "configs", "cgan.py:root=/x")).gan.diffaug
  train_cfg = cufs.train
  assert (train_cfg.eval_every, train_cfg.sample_every,
          train_cfg.checkpoint_every, train_cfg.checkpoint_at_epoch_end) == (
              0, 200, 200, False)
