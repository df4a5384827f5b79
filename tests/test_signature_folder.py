"""Tests for jaxgen.data.signatures.SignatureFolder on fake folders."""

import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxgen.data import image_io
from jaxgen.data import signatures
from tests import fakes

NUM_SIGNERS = 5
PER_SIGNER = 2


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  path = tmp_path_factory.mktemp('sigs')
  fakes.write_signature_folder(str(path), num_signers=NUM_SIGNERS,
                               per_signer=PER_SIGNER, seed=0)
  # Things that are not signers or images are ignored.
  (path / 'README.txt').write_text('not a signer')
  (path / 'signer_00' / 'notes.txt').write_text('not an image')
  (path / '.cache').mkdir()
  return str(path)


@pytest.fixture
def copy_of(root, tmp_path):
  def make():
    dst = tmp_path / 'copy'
    shutil.copytree(root, dst)
    return dst
  return make


def _signer_of(path):
  return os.path.basename(os.path.dirname(path))


def test_split_by_signer_disjoint_and_complete(root):
  train = signatures.SignatureFolder(root, 'train', res=32)
  test = signatures.SignatureFolder(root, 'test', res=32)
  assert train.signers == test.signers == [
      f'signer_{i:02d}' for i in range(NUM_SIGNERS)]
  assert set(train.split_signers).isdisjoint(test.split_signers)
  assert sorted(train.split_signers + test.split_signers) == train.signers
  assert len(test.split_signers) == 1  # round(0.2 * 5)
  assert len(train) + len(test) == NUM_SIGNERS * PER_SIGNER
  for ds in (train, test):
    assert {_signer_of(p) for p in ds.paths} == set(ds.split_signers)
    assert ds.num_skipped == 0


def test_elements(root):
  ds = signatures.SignatureFolder(root, 'all', res=32)
  assert len(ds) == NUM_SIGNERS * PER_SIGNER
  assert ds.paths == sorted(ds.paths)
  for i in range(len(ds)):
    item = ds[i]
    assert item['image'].shape == (32, 32, 1)
    assert item['image'].dtype == np.float32
    assert 0.0 <= item['image'].min() and item['image'].max() <= 1.0
    assert item['image'].max() > 0.5 and np.median(item['image']) == 0.0
    assert item['writer'].dtype == np.int32
    assert ds.signers[item['writer']] == _signer_of(ds.paths[i])
  # Elements are copies: editing one does not change the source.
  ds[0]['image'][:] = 7.0
  assert ds[0]['image'].max() <= 1.0
  with pytest.raises(IndexError):
    ds[len(ds)]
  assert 'images=10' in repr(ds)


def test_options_reach_preprocessing(root):
  ink = signatures.SignatureFolder(root, 'all', res=16)
  paper = signatures.SignatureFolder(root, 'all', res=16, invert=False)
  np.testing.assert_allclose(paper.images, 1.0 - ink.images, atol=1e-6)
  soft = signatures.SignatureFolder(root, 'all', res=16, binarize=False)
  assert not np.allclose(soft.images, ink.images)


def test_split_deterministic_and_seed_dependent(root):
  def test_signers(seed):
    return signatures.split_signers(
        [f's{i}' for i in range(10)], test_fraction=0.3, seed=seed)[1]
  assert test_signers(0) == test_signers(0)
  assert len(test_signers(0)) == 3
  assert len({tuple(test_signers(s)) for s in range(5)}) > 1
  a = signatures.SignatureFolder(root, 'test', res=16, seed=3)
  b = signatures.SignatureFolder(root, 'test', res=16, seed=3)
  assert a.paths == b.paths
  np.testing.assert_array_equal(a.images, b.images)


def test_split_signers_edge_cases():
  assert signatures.split_signers(['a', 'b'], 0.01, 0)[1] != []
  assert signatures.split_signers(['a', 'b'], 0.99, 0)[0] != []
  assert signatures.split_signers(['a'], 0.5, 0) == (['a'], [])
  assert signatures.split_signers(['a', 'b'], 1.0, 0)[0] == []
  assert signatures.split_signers(['a', 'b'], 0.0, 0)[1] == []


def test_grain_random_map_drives_source(root):
  grain = pytest.importorskip('grain')
  from jaxgen.data import augment
  ds = signatures.SignatureFolder(root, 'train', res=16)

  def mapped(seed):
    return grain.MapDataset.source(ds).random_map(
        lambda x, rng: dict(x, image=augment.augment(x['image'], rng,
                                                     rotation=10.0)),
        seed=seed)

  image = mapped(0)[1]['image']
  assert image.shape == (16, 16, 1)
  # The augmentation ran (the source's image moved) with the dataset's
  # seed: rebuilt with the same seed it repeats, another seed differs.
  assert not np.array_equal(image, ds[1]['image'])
  np.testing.assert_array_equal(image, mapped(0)[1]['image'])
  assert not np.array_equal(image, mapped(1)[1]['image'])


# ---------------------------------------------------------------- errors


def test_empty_split_explains(root):
  with pytest.raises(ValueError) as e:
    signatures.SignatureFolder(root, 'test', res=16, test_fraction=0.0)
  msg = str(e.value)
  assert root in msg and '5 signer' in msg and 'test_fraction' in msg


def test_single_signer_has_no_test_split(tmp_path):
  fakes.write_signature_folder(str(tmp_path), num_signers=1, per_signer=1)
  assert len(signatures.SignatureFolder(str(tmp_path), 'train', res=16)) == 1
  with pytest.raises(ValueError, match='1 signer.*test_fraction'):
    signatures.SignatureFolder(str(tmp_path), 'test', res=16)


def test_missing_root(tmp_path):
  path = str(tmp_path / 'nowhere')
  with pytest.raises(FileNotFoundError, match='nowhere'):
    signatures.SignatureFolder(path)


def test_root_is_a_file(tmp_path):
  path = tmp_path / 'file.png'
  path.write_bytes(b'x')
  with pytest.raises(ValueError, match='not a directory') as e:
    signatures.SignatureFolder(str(path))
  assert str(path) in str(e.value)


def test_no_signer_folders(tmp_path):
  Image.fromarray(fakes.draw_fake_scan(0, (60, 100))).save(tmp_path / 'a.png')
  with pytest.raises(ValueError, match='No signer sub-folders') as e:
    signatures.SignatureFolder(str(tmp_path))
  assert str(tmp_path) in str(e.value)


def test_no_images(tmp_path):
  (tmp_path / 'alice').mkdir()
  (tmp_path / 'alice' / 'notes.txt').write_text('hi')
  (tmp_path / 'bob').mkdir()
  with pytest.raises(ValueError, match='No images') as e:
    signatures.SignatureFolder(str(tmp_path))
  assert str(tmp_path) in str(e.value) and '2 signer' in str(e.value)


@pytest.mark.parametrize('kwargs,match', [
    (dict(split='val'), r"split 'val'.*'train', 'test', 'all'"),
    (dict(on_bad_file='ignore'), r"on_bad_file 'ignore'.*'error', 'skip'"),
    (dict(res=4), r'res 4.*>= 8'),
    (dict(test_fraction=1.5), r'test_fraction 1.5.*\[0, 1\]'),
])
def test_invalid_arguments_list_valid_values(root, kwargs, match):
  with pytest.raises(ValueError, match=match):
    signatures.SignatureFolder(root, **kwargs)


_BAD_FILES = {
    # name: (signer folder, what the error says)
    'half.png': ('signer_01', 'truncated'),
    'empty.png': ('signer_02', 'empty'),
    'text.png': ('signer_03', 'Cannot read'),
    'blank.png': ('signer_04', 'No ink'),
}


def _write_bad_file(dst, name):
  """Writes one kind of bad file into a signer folder; returns its path."""
  path = dst / _BAD_FILES[name][0] / name
  if name == 'half.png':
    fakes.write_truncated_png(str(path))
  elif name == 'empty.png':
    path.write_bytes(b'')
  elif name == 'text.png':
    path.write_text('not a png')
  else:  # A blank page: readable, but there is no ink.
    Image.fromarray(np.full((60, 100), 200, np.uint8)).save(path)
  return str(path)


@pytest.mark.parametrize('name', sorted(_BAD_FILES))
def test_bad_file_raises_naming_it(copy_of, name):
  bad = _write_bad_file(copy_of(), name)
  with pytest.raises(ValueError, match=_BAD_FILES[name][1]) as e:
    signatures.SignatureFolder(os.path.dirname(os.path.dirname(bad)), 'all',
                               res=16)
  assert bad in str(e.value)


def test_skip_mode_counts_and_logs(copy_of, caplog):
  dst = copy_of()
  bad = [_write_bad_file(dst, name) for name in _BAD_FILES]
  with caplog.at_level(logging.WARNING):
    ds = signatures.SignatureFolder(str(dst), 'all', res=16,
                                    on_bad_file='skip')
  assert ds.num_skipped == 4
  assert sorted(p for p, _ in ds.skipped) == sorted(bad)
  assert len(ds) == NUM_SIGNERS * PER_SIGNER
  assert not set(bad) & set(ds.paths)
  messages = [r.getMessage() for r in caplog.records]
  for path in bad:
    assert sum(path in m for m in messages) == 1
  assert any('Skipped 4 of 14' in m for m in messages)


def test_skip_mode_with_only_bad_files(tmp_path):
  (tmp_path / 'alice').mkdir()
  fakes.write_truncated_png(str(tmp_path / 'alice' / 'a.png'))
  with pytest.raises(ValueError, match='All 1 image'):
    signatures.SignatureFolder(str(tmp_path), 'all', on_bad_file='skip')
  with pytest.raises(image_io.ImageReadError, match='a.png'):
    signatures.SignatureFolder(str(tmp_path), 'all')
