"""Tests for jaxgen.data.sketchify: operators, folder source and CLI."""

import os

import numpy as np
from PIL import Image
import pytest

from jaxgen.data import faces
from jaxgen.data import paired
from jaxgen.data import sketchify

METHODS = ('xdog', 'dodge')


def _step(low: float, high: float, size: int = 48) -> np.ndarray:
  """RGB image: left half ``low``, right half ``high`` (a vertical edge)."""
  img = np.full((size, size, 3), low, np.float32)
  img[:, size // 2:] = high
  return img


@pytest.mark.parametrize('method', METHODS)
def test_output_shape_dtype_range(method):
  photo = faces.render_face(3, 64)
  out = sketchify.sketchify(photo, method)
  assert out.shape == (64, 64)
  assert out.dtype == np.float32
  assert 0.0 <= out.min() and out.max() <= 1.0
  # A face sketch is mostly paper with some strokes, not blank or black.
  assert 0.4 < out.mean() < 0.98
  assert out.min() < 0.5


@pytest.mark.parametrize('method', METHODS)
def test_edge_darker_than_flat_regions(method):
  out = sketchify.sketchify(_step(0.7, 0.95), method, stretch=False)
  edge = out[:, 20:28].min(axis=1)
  flat = np.concatenate([out[:, :8], out[:, -8:]], axis=1).mean(axis=1)
  assert np.all(flat > 0.97)  # Flat bright areas stay white paper.
  assert np.all(edge < flat - 0.15)


@pytest.mark.parametrize('method', METHODS)
def test_edge_darker_with_default_contrast_stretch(method):
  out = sketchify.sketchify(_step(0.45, 0.9), method)
  edge = out[:, 20:28].min()
  assert edge < np.median(out[:, -8:]) - 0.2
  if method == 'xdog':
    # XDoG also outlines the dark side; the dodge keeps dark areas dark.
    assert edge < np.median(out[:, :8])


def test_greyscale_input_and_errors():
  grey = _step(0.6, 0.9)[..., 0]
  np.testing.assert_allclose(sketchify.sketchify(grey),
                             sketchify.sketchify(_step(0.6, 0.9)), atol=1e-5)
  with pytest.raises(ValueError, match='unknown sketch method'):
    sketchify.sketchify(grey, 'charcoal')
  with pytest.raises(ValueError, match='RGB'):
    sketchify.sketchify(np.zeros((4, 4, 2), np.float32))


def test_parameters_change_the_drawing():
  photo = faces.render_face(5, 64)
  light = sketchify.sketchify(photo, 'xdog', epsilon=0.3)
  dark = sketchify.sketchify(photo, 'xdog', epsilon=0.8)
  assert light.mean() > dark.mean() + 0.05


def _write_faces(folder, seeds, size=48):
  os.makedirs(folder, exist_ok=True)
  for s in seeds:
    img = faces.render_face(s, size)
    Image.fromarray((img * 255).astype(np.uint8)).save(
        os.path.join(folder, f'face{s}.png'))


def test_sketchified_folder(tmp_path):
  _write_faces(tmp_path / 'a', [0, 1])
  _write_faces(tmp_path / 'b', [2])
  ds = sketchify.SketchifiedFolder(str(tmp_path), size=32)
  assert len(ds) == 3
  e = ds[2]
  assert e['photo'].shape == (32, 32, 3) and e['sketch'].shape == (32, 32, 1)
  assert e['photo'].dtype == np.float32 and e['sketch'].dtype == np.float32
  # Index 2 is b/face2.png (sorted paths), loaded at 32 px, and the sketch
  # is the default operator on that photo.
  np.testing.assert_array_equal(
      e['photo'], sketchify.load_photo(str(tmp_path / 'b' / 'face2.png'), 32))
  np.testing.assert_allclose(e['sketch'][..., 0],
                             sketchify.sketchify(e['photo']), atol=1e-6)
  assert not np.array_equal(e['photo'], ds[0]['photo'])
  with pytest.raises(FileNotFoundError, match='does not exist'):
    sketchify.SketchifiedFolder(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='no images'):
    sketchify.SketchifiedFolder(str(tmp_path / 'empty'))


def test_cli_end_to_end(tmp_path, capsys):
  src, dst = tmp_path / 'src', tmp_path / 'dst'
  _write_faces(src, [0, 1, 2])
  _write_faces(src / 'more', [3, 4])  # Nested: read recursively.
  (src / 'broken.jpg').write_bytes(b'not an image')
  (src / 'notes.txt').write_text('ignored')
  rc = sketchify.main([str(src), str(dst), '--size', '32'])
  assert rc == 0
  assert '5 pairs' in capsys.readouterr().out
  names = sorted(os.listdir(dst / 'sketches'))
  assert names == sorted(os.listdir(dst / 'photos'))
  assert len(names) == 5 and 'more_face3.png' in names
  with Image.open(dst / 'sketches' / 'face0.png') as im:
    assert im.mode == 'L' and im.size == (32, 32)
  with Image.open(dst / 'photos' / 'face0.png') as im:
    assert im.mode == 'RGB'
  # The result is a paired dataset that PairedFolder reads directly.
  ds = paired.PairedFolder(str(dst), 'train', 32, sketch_channels=1,
                           photo_channels=3, val_fraction=0.2)
  assert len(ds) == 4


def test_cli_val_split(tmp_path):
  src, dst = tmp_path / 'src', tmp_path / 'dst'
  _write_faces(src, range(6), size=24)
  assert sketchify.main([str(src), str(dst), '--val_fraction', '0.34',
                         '--method', 'dodge']) == 0
  train = set(os.listdir(dst / 'train' / 'photos'))
  val = set(os.listdir(dst / 'val' / 'sketches'))
  assert len(val) == 2 and len(train) == 4 and not train & val
  splits = paired.resolve_splits(str(dst))
  assert len(splits['train']) == 4 and len(splits['test']) == 2


def test_cli_errors(tmp_path, capsys):
  assert sketchify.main([str(tmp_path / 'nope'), str(tmp_path / 'out')]) == 1
  assert 'does not exist' in capsys.readouterr().err
  (tmp_path / 'empty').mkdir()
  assert sketchify.main([str(tmp_path / 'empty'), str(tmp_path / 'out')]) == 1
  assert 'no images' in capsys.readouterr().err
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / 'x.png').write_bytes(b'broken')
  assert sketchify.main([str(bad), str(tmp_path / 'out')]) == 1
  assert 'could be read' in capsys.readouterr().err
  # Usage errors: exit 2, naming what is expected.
  assert sketchify.main([str(bad)]) == 2
  assert 'SRC DST' in capsys.readouterr().err
  for flag in ('--val_fraction=1', '--method=ink', '--size=4'):
    assert sketchify.main([str(bad), str(tmp_path / 'out'), flag]) == 2
    assert flag.split('=')[0][2:] in capsys.readouterr().err
