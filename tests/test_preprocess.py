"""Tests for jaxgen.data.preprocess on synthetic scans and files."""

import numpy as np
import pytest
from PIL import Image
from PIL import ImageFile

from jaxgen.data import image_io
from jaxgen.data import preprocess
from tests import fakes


def _gray(seed, size=(240, 400)):
  scan = fakes.fake_scan(seed, size)
  return scan, scan.image.astype(np.float32) / 255.0


# ----------------------------------------------------------------- otsu


def test_otsu_two_levels_splits_halfway():
  gray = np.full((10, 20), 0.2, np.float32)
  gray[:, 10:] = 0.8
  t = preprocess.otsu_threshold(gray)
  assert t == pytest.approx(0.5, abs=1.5 / 256)
  assert np.all((gray < t) == (gray == np.float32(0.2)))


def test_otsu_noisy_bimodal_and_unequal_classes():
  rng = np.random.default_rng(0)
  dark = rng.normal(0.25, 0.03, 2000)
  light = rng.normal(0.75, 0.03, 8000)
  t = preprocess.otsu_threshold(np.clip(np.concatenate([dark, light]), 0, 1))
  assert 0.4 < t < 0.6


def test_otsu_constant_image():
  assert preprocess.otsu_threshold(np.full((4, 4), 0.3)) == pytest.approx(0.3)


# ------------------------------------------------------------- loading


def test_load_grayscale_l_png(tmp_path):
  arr = np.arange(256, dtype=np.uint8).reshape(16, 16)
  path = tmp_path / 'l.png'
  Image.fromarray(arr).save(path)
  out = image_io.load_grayscale(str(path))
  assert out.dtype == np.float32 and out.shape == (16, 16)
  np.testing.assert_allclose(out, arr / 255.0, atol=1e-6)


def test_load_grayscale_rgb_uses_luma(tmp_path):
  arr = np.zeros((4, 6, 3), np.uint8)
  arr[:, :2] = (255, 0, 0)
  arr[:, 2:4] = (0, 255, 0)
  arr[:, 4:] = (255, 255, 255)
  path = tmp_path / 'rgb.png'
  Image.fromarray(arr).save(path)
  out = image_io.load_grayscale(path)
  np.testing.assert_allclose(out[0, [0, 2, 4]], [0.299, 0.587, 1.0],
                             atol=1e-5)


def test_load_grayscale_rgba_composited_on_white(tmp_path):
  arr = np.zeros((2, 3, 4), np.uint8)
  arr[:, 0] = (0, 0, 0, 0)  # Transparent: paper.
  arr[:, 1] = (0, 0, 0, 255)  # Opaque black ink.
  arr[:, 2] = (0, 0, 0, 128)  # Half transparent.
  path = tmp_path / 'rgba.png'
  Image.fromarray(arr, mode='RGBA').save(path)
  out = image_io.load_grayscale(path)
  np.testing.assert_allclose(out[0], [1.0, 0.0, 1 - 128 / 255], atol=1e-5)


def test_load_grayscale_16_bit(tmp_path):
  arr = np.array([[0, 1000, 32768, 65535]], np.uint16)
  path = tmp_path / 'sixteen.png'
  Image.fromarray(arr).save(path)
  assert Image.open(path).mode.startswith('I')
  out = image_io.load_grayscale(path)
  np.testing.assert_allclose(out, arr / 65535.0, atol=1e-6)


def test_load_grayscale_jpeg_and_palette(tmp_path):
  scan = fakes.draw_fake_scan(0, (60, 100))
  Image.fromarray(scan).save(tmp_path / 'a.jpg', quality=95)
  Image.fromarray(scan).convert('P').save(tmp_path / 'p.png')
  for name in ('a.jpg', 'p.png'):
    out = image_io.load_grayscale(tmp_path / name)
    assert out.shape == (60, 100)
    assert np.abs(out - scan / 255.0).mean() < 0.02


@pytest.mark.parametrize('lenient', [False, True])
def test_load_truncated_png_raises(tmp_path, monkeypatch, lenient):
  # Also when other code told PIL to tolerate truncated files.
  monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', lenient)
  path = fakes.write_truncated_png(str(tmp_path / 'half.png'))
  with pytest.raises(image_io.ImageReadError, match='truncated') as e:
    image_io.load_grayscale(path)
  assert path in str(e.value)


def test_load_truncated_jpeg_raises(tmp_path, monkeypatch):
  monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
  full = tmp_path / 'full.jpg'
  Image.fromarray(fakes.draw_fake_scan(1, (60, 100))).save(full)
  data = full.read_bytes()
  path = tmp_path / 'half.jpg'
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(image_io.ImageReadError, match='truncated'):
    image_io.load_grayscale(path)


def test_load_empty_file_raises(tmp_path):
  path = tmp_path / 'empty.png'
  path.write_bytes(b'')
  with pytest.raises(image_io.ImageReadError, match='empty') as e:
    image_io.load_grayscale(path)
  assert str(path) in str(e.value)


def test_load_text_file_with_png_name_raises(tmp_path):
  path = tmp_path / 'notes.png'
  path.write_text('this is not an image\n')
  with pytest.raises(image_io.ImageReadError) as e:
    image_io.load_grayscale(path)
  assert str(path) in str(e.value)
  assert isinstance(e.value, ValueError)


def test_load_missing_file_raises(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.png'):
    image_io.load_grayscale(tmp_path / 'nope.png')


# ------------------------------------------------------ ink segmentation


@pytest.mark.parametrize('seed,size', [(0, (240, 400)), (1, (240, 400)),
                                       (2, (120, 200)), (3, (120, 200))])
def test_ink_mask_recovers_drawn_signature(seed, size):
  scan, gray = _gray(seed, size)
  found = preprocess.ink_bbox(preprocess.ink_mask(gray))
  true = fakes.ink_bbox(scan.ink)
  np.testing.assert_allclose(found, true, atol=3)
  # Nothing of the ruled box survives: the crop lies well inside it.
  top, bottom, left, right = scan.box
  assert found[0] > top + 5 and found[1] < bottom - 5
  assert found[2] > left + 5 and found[3] < right - 5


def test_ink_mask_handles_strong_uneven_illumination():
  scan, gray = _gray(4)
  # A shadow darkening one side to a third of the other.
  shade = np.linspace(0.35, 1.0, gray.shape[1], dtype=np.float32)[None]
  found = preprocess.ink_bbox(preprocess.ink_mask(gray * shade))
  np.testing.assert_allclose(found, fakes.ink_bbox(scan.ink), atol=3)


def test_box_border_only_has_no_ink():
  gray = np.full((120, 200), 0.8, np.float32)
  gray[5:7, 5:195] = gray[113:115, 5:195] = 0.3
  gray[5:115, 5:7] = gray[5:115, 193:195] = 0.3
  assert not preprocess.ink_mask(gray).any()
  with pytest.raises(ValueError, match='No ink'):
    preprocess.preprocess_scan(gray)


def test_blank_paper_raises_no_ink():
  rng = np.random.default_rng(0)
  gray = np.clip(0.8 + 0.02 * rng.standard_normal((100, 150)), 0, 1)
  with pytest.raises(ValueError, match='No ink'):
    preprocess.preprocess_scan(gray.astype(np.float32))


def test_binarize_methods():
  _, gray = _gray(5, (120, 200))
  hard = preprocess.binarize(gray, 'otsu')
  soft = preprocess.binarize(gray, 'none')
  assert hard.dtype == soft.dtype == np.float32
  assert set(np.unique(hard)) <= {0.0, 1.0}
  assert 0.0 <= soft.min() and soft.max() <= 1.0
  # Soft ink lives where the hard ink is and shades its edges.
  assert soft[hard > 0].mean() > 0.7
  assert np.all(soft[:10] == 0)
  with pytest.raises(ValueError, match="'otsu' or 'none'"):
    preprocess.binarize(gray, 'sauvola')


# ------------------------------------------------------- crop, pad, resize


def test_crop_pad_resize_helpers():
  image = np.zeros((30, 40), np.float32)
  image[10:15, 5:25] = 1.0
  crop = preprocess.crop_to_ink(image)
  assert crop.shape == (5, 20)
  assert preprocess.crop_to_ink(image, margin=0.1).shape == (9, 24)
  square = preprocess.pad_to_square(crop)
  assert square.shape == (20, 20)
  np.testing.assert_array_equal(square[7:12], 1.0)
  assert square[:7].max() == 0 and square[12:].max() == 0
  assert preprocess.pad_to_square(crop, margin=0.25).shape == (40, 40)
  small = preprocess.resize(square, 10)
  # The box filter keeps coverage exactly: an anti-aliased mask.
  assert small.mean() == pytest.approx(square.mean(), abs=1e-6)
  with pytest.raises(ValueError, match='No ink'):
    preprocess.crop_to_ink(np.zeros((5, 5)))
  with pytest.raises(ValueError, match='margin'):
    preprocess.pad_to_square(crop, margin=0.5)


def test_preprocess_scan_output_and_invert_semantics():
  _, gray = _gray(6)
  ink = preprocess.preprocess_scan(gray, res=64)
  assert ink.shape == (64, 64) and ink.dtype == np.float32
  assert ink.min() >= 0.0 and ink.max() <= 1.0 and ink.max() > 0.9
  # Ink = 1 on a 0 background: mostly background, empty margin.
  assert np.median(ink) == 0.0
  border = np.concatenate([ink[:2].ravel(), ink[-2:].ravel(),
                           ink[:, :2].ravel(), ink[:, -2:].ravel()])
  assert border.max() == 0.0
  # Anti-aliased: intermediate values along stroke edges.
  assert np.any((ink > 0.05) & (ink < 0.95))
  # The signature is wider than tall and spans 1 - 2 * margin of the width.
  cols = np.flatnonzero(ink.max(axis=0) > 0)
  assert cols[-1] - cols[0] + 1 == pytest.approx(64 * 0.9, abs=2)
  paper = preprocess.preprocess_scan(gray, res=64, invert=False)
  np.testing.assert_allclose(paper, 1.0 - ink, atol=1e-6)
  soft = preprocess.preprocess_scan(gray, res=32, binarize=False)
  assert soft.shape == (32, 32) and soft.dtype == np.float32
  assert soft.min() >= 0.0 and soft.max() <= 1.0 and np.median(soft) == 0.0
