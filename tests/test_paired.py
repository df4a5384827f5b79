"""Tests for jaxgen.data.paired: paired folders and pix2pix preprocessing."""

import logging
import os
import shutil
import zlib

import numpy as np
from PIL import Image
import pytest

from jaxgen.data import paired


def _write(path, mode, size=(20, 16), value=None, ext='.png'):
  """Writes a small image; ``size`` is (W, H) as PIL takes it."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.default_rng(zlib.crc32(str(path).encode()))
  channels = {'L': 1, 'RGB': 3, 'RGBA': 4}[mode]
  a = rng.integers(0, 256, (size[1], size[0], channels), np.uint8)
  if value is not None:
    a[:] = value
  Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(path + ext)


def _make_split(root, split, names, sketch_mode='L', photo_mode='RGB',
                photo_ext='.jpg'):
  base = os.path.join(root, split) if split else root
  for n in names:
    _write(os.path.join(base, 'sketches', n), sketch_mode)
    _write(os.path.join(base, 'photos', n), photo_mode, ext=photo_ext)


def test_pairs_by_stem_across_extensions(tmp_path):
  _make_split(tmp_path, 'train', ['b', 'a', 'c'])
  pairs = paired.find_pairs(str(tmp_path / 'train'))
  assert [p.name for p in pairs] == ['a', 'b', 'c']
  assert pairs[0].sketch.endswith('a.png') and pairs[0].photo.endswith('a.jpg')


def test_unpaired_names_error_with_counts(tmp_path):
  _make_split(tmp_path, 'train', ['a', 'b'])
  for n in ('s1', 's2'):
    _write(str(tmp_path / 'train' / 'sketches' / n), 'L')
  _write(str(tmp_path / 'train' / 'photos' / 'p1'), 'RGB')
  with pytest.raises(ValueError) as e:
    paired.resolve_splits(str(tmp_path))
  msg = str(e.value)
  assert '2 sketch(es) without a photo' in msg and "'s1'" in msg
  assert '1 photo(s) without a sketch' in msg and "'p1'" in msg
  assert '2 names match' in msg


def test_duplicate_stem_error(tmp_path):
  _make_split(tmp_path, 'train', ['a'])
  _write(str(tmp_path / 'train' / 'photos' / 'a'), 'RGB', ext='.png')
  with pytest.raises(ValueError, match='two images with the stem'):
    paired.find_pairs(str(tmp_path / 'train'))


def test_derived_val_is_disjoint_and_deterministic(tmp_path, caplog):
  names = [f'n{i:02d}' for i in range(20)]
  _make_split(tmp_path, 'train', names)
  with caplog.at_level(logging.INFO):
    s1 = paired.resolve_splits(str(tmp_path), val_fraction=0.25, seed=3)
  assert 'no test/ split' in caplog.text
  s2 = paired.resolve_splits(str(tmp_path), val_fraction=0.25, seed=3)
  train = {p.name for p in s1['train']}
  val = {p.name for p in s1['val']}
  assert len(val) == 5 and len(train) == 15
  assert not train & val and train | val == set(names)
  assert s1 == s2
  assert s1['test'] == s1['val']
  other = paired.resolve_splits(str(tmp_path), val_fraction=0.25, seed=4)
  assert {p.name for p in other['val']} != val
  # The split depends on the names only, not on their order.
  t, v = paired.split_names(names[::-1], 0.25, seed=3)
  assert set(v) == val and set(t) == train


def test_existing_splits_and_flat_layout(tmp_path):
  _make_split(tmp_path / 'full', 'train', ['a', 'b'])
  _make_split(tmp_path / 'full', 'val', ['c'])
  _make_split(tmp_path / 'full', 'test', ['d'])
  s = paired.resolve_splits(str(tmp_path / 'full'))
  assert [[p.name for p in s[k]] for k in paired.SPLITS] == [
      ['a', 'b'], ['c'], ['d']]
  _make_split(tmp_path / 'flat', '', ['a', 'b', 'c', 'd'])
  s = paired.resolve_splits(str(tmp_path / 'flat'), val_fraction=0.25)
  assert len(s['train']) == 3 and len(s['val']) == 1


def test_missing_and_empty_errors(tmp_path):
  with pytest.raises(FileNotFoundError) as e:
    paired.PairedFolder(str(tmp_path / 'nowhere'))
  msg = str(e.value)
  assert 'Person Face Sketches' in msg and 'CUFS' in msg
  assert 'configs/cgan.py:demo' in msg
  (tmp_path / 'empty' / 'train' / 'sketches').mkdir(parents=True)
  (tmp_path / 'empty' / 'train' / 'photos').mkdir()
  with pytest.raises(ValueError, match='empty') as e:
    paired.PairedFolder(str(tmp_path / 'empty'))
  assert os.path.join(str(tmp_path), 'empty', 'train') in str(e.value)
  (tmp_path / 'half' / 'train' / 'sketches').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='photos'):
    paired.PairedFolder(str(tmp_path / 'half'))
  (tmp_path / 'notrain' / 'val').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='no train/ split'):
    paired.PairedFolder(str(tmp_path / 'notrain'))
  _make_split(tmp_path / 'one', 'train', ['a'])
  with pytest.raises(ValueError, match='val split'):
    paired.PairedFolder(str(tmp_path / 'one'), 'val')
  with pytest.raises(ValueError, match='unknown split'):
    paired.PairedFolder(str(tmp_path / 'one'), 'dev')


def test_channels_come_from_data(tmp_path):
  _make_split(tmp_path / 'grey', 'train', ['a', 'b'])
  ds = paired.PairedFolder(str(tmp_path / 'grey'), 'train', 12,
                           val_fraction=0.0)
  e = ds[0]
  assert e['sketch'].shape == (12, 12, 1) and e['photo'].shape == (12, 12, 3)
  assert e['sketch'].dtype == np.float32 and e['photo'].dtype == np.float32
  assert 0.0 <= e['photo'].min() and e['photo'].max() <= 1.0
  # RGB sketches stay RGB; nothing is broadcast or collapsed silently.
  _make_split(tmp_path / 'rgb', 'train', ['a', 'b'], sketch_mode='RGB')
  ds = paired.PairedFolder(str(tmp_path / 'rgb'), 'train', (10, 14))
  assert ds[0]['sketch'].shape == (10, 14, 3)
  with pytest.raises(ValueError) as e:
    paired.PairedFolder(str(tmp_path / 'rgb'), 'train', sketch_channels=1,
                        val_fraction=0.0)
  assert 'a.png' in str(e.value) and 'found 3' in str(e.value)


def test_mixed_channels_in_split_is_an_error(tmp_path):
  _make_split(tmp_path, 'train', ['a', 'b'])
  _write(str(tmp_path / 'train' / 'sketches' / 'b'), 'RGB')
  ds = paired.PairedFolder(str(tmp_path), 'train', 8, val_fraction=0.0)
  ds[0]
  with pytest.raises(ValueError, match=r'b\.png.*3 channel'):
    ds[1]


def test_resize_and_cache(tmp_path):
  _make_split(tmp_path, 'train', ['a', 'b', 'c'])
  cached = paired.PairedFolder(str(tmp_path), 'train', 9, val_fraction=0.0)
  uncached = paired.PairedFolder(str(tmp_path), 'train', 9, val_fraction=0.0,
                                 cache_bytes=0)
  first = [cached[i] for i in range(3)]
  for i in range(3):
    for k in ('sketch', 'photo'):
      assert first[i][k].shape[:2] == (9, 9)
      np.testing.assert_array_equal(first[i][k], uncached[i][k])
  assert [p.name for p in cached.pairs] == ['a', 'b', 'c']
  # Later reads come from memory: the files are no longer needed ...
  shutil.rmtree(tmp_path / 'train')
  with pytest.raises(FileNotFoundError):
    uncached[0]  # pylint: disable=pointless-statement
  for i in range(3):
    for k in ('sketch', 'photo'):
      np.testing.assert_array_equal(cached[i][k], first[i][k])
  # ... and every read is a copy: editing one leaves the cache intact.
  first[0]['photo'][:] = 7.0
  assert cached[0]['photo'].max() <= 1.0


def _marked_pair(h=40, w=40, row=5, col=9):
  sketch = np.zeros((h, w, 1), np.float32)
  photo = np.zeros((h, w, 3), np.float32)
  sketch[row, col] = 1.0
  photo[row, col] = 1.0
  return sketch, photo


def test_transform_crops_and_flips_identically():
  sketch, photo = _marked_pair()
  flips = set()
  for seed in range(12):
    rng = np.random.default_rng(seed)
    s, p = paired.paired_transform(sketch, photo, rng, load_size=40,
                                   crop_size=32)
    assert s.shape == (32, 32, 1) and p.shape == (32, 32, 3)
    assert s.dtype == np.float32 and p.dtype == np.float32
    assert s.min() >= -1.0 and s.max() <= 1.0 and p.min() >= -1.0
    if s.max() > 0:  # The marker survived the crop: same place in both.
      r, c = np.unravel_index(np.argmax(s[..., 0]), s.shape[:2])
      for ch in range(3):
        assert np.unravel_index(np.argmax(p[..., ch]), p.shape[:2]) == (r, c)
    else:
      assert p.max() < 0
    # Replay the draws to learn whether this sample was flipped.
    replay = np.random.default_rng(seed)
    top, left = replay.integers(0, 9), replay.integers(0, 9)
    flipped = replay.random() < 0.5
    flips.add(bool(flipped))
    if 0 <= 5 - top < 32 and 0 <= 9 - left < 32:
      expect_col = 31 - (9 - left) if flipped else 9 - left
      assert s[5 - top, expect_col, 0] == 1.0
  assert flips == {True, False}


def test_transform_resizes_to_load_size_then_crops():
  sketch, photo = _marked_pair(h=20, w=30)
  s, p = paired.paired_transform(sketch, photo, np.random.default_rng(0),
                                 load_size=(24, 26), crop_size=(16, 18),
                                 flip=False)
  assert s.shape == (16, 18, 1) and p.shape == (16, 18, 3)
  # The whole resized pair (crop = load size: nothing cropped), its marker
  # moved with the scale ((5, 9) of 20 x 30 -> about (6, 8) of 24 x 26) ...
  full, _ = paired.paired_transform(sketch, photo, np.random.default_rng(0),
                                    load_size=(24, 26), crop_size=(24, 26),
                                    flip=False)
  r, c = np.unravel_index(np.argmax(full[..., 0]), full.shape[:2])
  assert abs(r - 6) <= 1 and abs(c - 8) <= 1
  # ... and the crop is its window at the replayed offset.
  replay = np.random.default_rng(0)
  top, left = replay.integers(0, 9), replay.integers(0, 9)
  np.testing.assert_allclose(s, full[top:top + 16, left:left + 18])


def test_transform_test_time_is_deterministic():
  sketch, photo = _marked_pair()
  rng = np.random.default_rng(1)
  state = rng.bit_generator.state
  a = paired.paired_transform(sketch, photo, rng, load_size=48, crop_size=32,
                              train=False)
  b = paired.paired_transform(sketch, photo, np.random.default_rng(2),
                              load_size=48, crop_size=32, train=False)
  assert rng.bit_generator.state == state  # No randomness consumed.
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert a[0].shape == (32, 32, 1)
  # Straight resize to crop size: the marker stays in the top-left area.
  r, c = np.unravel_index(np.argmax(a[0][..., 0]), (32, 32))
  assert abs(r - 5 * 32 / 40) <= 1 and abs(c - 9 * 32 / 40) <= 1


def test_transform_value_range_and_errors():
  s = np.linspace(0, 1, 16 * 16).reshape(16, 16, 1).astype(np.float32)
  p = np.repeat(s, 3, -1)
  out_s, out_p = paired.paired_transform(s, p, np.random.default_rng(0),
                                         load_size=16, crop_size=16)
  assert out_s.min() == -1.0 and out_s.max() == 1.0
  assert out_p.min() == -1.0 and out_p.max() == 1.0
  with pytest.raises(ValueError, match='exceeds'):
    paired.paired_transform(s, p, None, load_size=16, crop_size=20)
  with pytest.raises(ValueError, match='differ'):
    paired.paired_transform(s, p[:8], None, load_size=16, crop_size=8)


def test_paired_transform_in_grain_pipeline(tmp_path):
  grain = pytest.importorskip('grain.python')
  _make_split(tmp_path, 'train', ['a', 'b', 'c', 'd'])
  source = paired.PairedFolder(str(tmp_path), 'train', 20, val_fraction=0.0)
  transform = paired.PairedTransform(load_size=20, crop_size=16)
  ds = grain.MapDataset.source(source).random_map(transform, seed=0)
  e = ds[1]
  assert e['sketch'].shape == (16, 16, 1) and e['photo'].shape == (16, 16, 3)
  again = grain.MapDataset.source(source).random_map(transform, seed=0)[1]
  np.testing.assert_array_equal(e['photo'], again['photo'])
