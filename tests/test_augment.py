"""Tests for jaxgen.data.augment."""

import time

import ml_collections
import numpy as np
import pytest

from jaxgen.data import augment as aug

ALL_ON = dict(scale=0.1, rotation=10.0, translation=0.1, noise=0.05,
              crop=0.8)


def _blob(size=64, channels=1):
  """A filled rectangle well away from the border, ink = 1."""
  image = np.zeros((size, size, channels), np.float32)
  image[24:36, 20:40] = 1.0
  return image


def _centroid(image):
  ink = image[..., 0]
  ys, xs = np.mgrid[0:ink.shape[0], 0:ink.shape[1]]
  return np.array([(ys * ink).sum(), (xs * ink).sum()]) / ink.sum()


def test_all_disabled_returns_input_unchanged():
  image = _blob()
  rng = np.random.default_rng(0)
  out = aug.augment(image, rng)
  assert out is image
  out = aug.augment_from_config(image, rng, {})
  assert out is image
  assert aug.augment_from_config(image, rng, None) is image


@pytest.mark.parametrize('shape', [(64, 64, 1), (32, 48, 3), (40, 40)])
def test_shape_and_dtype_preserved(shape):
  image = np.random.default_rng(0).random(shape, dtype=np.float32)
  out = aug.augment(image, np.random.default_rng(1), **ALL_ON)
  assert out.shape == image.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 1.0
  assert not np.array_equal(out, image)


def test_deterministic_given_seed():
  image = _blob()
  a = aug.augment(image, np.random.default_rng(7), **ALL_ON)
  b = aug.augment(image, np.random.default_rng(7), **ALL_ON)
  c = aug.augment(image, np.random.default_rng(8), **ALL_ON)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_whole_pixel_translation_moves_centroid_exactly():
  image = _blob()
  matrix, offset = aug.affine_inverse(image.shape, shift=(3, -2))
  out = aug.warp(image, matrix, offset)
  np.testing.assert_allclose(_centroid(out) - _centroid(image), [3, -2],
                             atol=1e-9)
  np.testing.assert_array_equal(out[27:39, 18:38], 1.0)
  assert out.sum() == image.sum()


def test_random_translation_only_shifts():
  image = _blob()
  out = aug.augment(image, np.random.default_rng(3), translation=0.1)
  matrix, offset = aug.sample_transform(np.random.default_rng(3),
                                        image.shape, translation=0.1)
  np.testing.assert_allclose(matrix, np.eye(2), atol=1e-12)
  shift = -offset
  assert np.all(np.abs(shift) <= 0.1 * 64) and np.any(np.abs(shift) > 0.5)
  np.testing.assert_allclose(_centroid(out) - _centroid(image), shift,
                             atol=1e-3)
  assert out.sum() == pytest.approx(image.sum(), rel=1e-5)


def test_rotation_by_90_is_exact_and_keeps_ink_mass():
  image = _blob()
  matrix, offset = aug.affine_inverse(image.shape, angle=90)
  out = aug.warp(image, matrix, offset)
  np.testing.assert_allclose(out, np.rot90(image), atol=1e-6)
  assert out.sum() == pytest.approx(image.sum(), rel=1e-6)


def test_random_rotation_keeps_mass_and_centre():
  image = np.zeros((64, 64, 1), np.float32)
  image[26:38, 16:48] = 1.0  # Centred on the rotation centre (31.5, 31.5).
  out = aug.augment(image, np.random.default_rng(0), rotation=30.0)
  assert not np.allclose(out, image)
  assert out.sum() == pytest.approx(image.sum(), rel=0.02)
  np.testing.assert_allclose(_centroid(out), [31.5, 31.5], atol=0.1)


def test_scale_changes_ink_area_by_zoom_squared():
  image = np.zeros((64, 64, 1), np.float32)
  image[22:42, 22:42] = 1.0
  zooms = []
  for seed in range(4):
    out = aug.augment(image, np.random.default_rng(seed), scale=0.3)
    matrix, _ = aug.sample_transform(np.random.default_rng(seed), image.shape,
                                     scale=0.3)
    zoom = 1.0 / matrix[0, 0]
    np.testing.assert_allclose(matrix, np.eye(2) / zoom, atol=1e-12)
    assert 0.7 <= zoom <= 1.3
    assert out.sum() / image.sum() == pytest.approx(zoom ** 2, rel=0.03)
    np.testing.assert_allclose(_centroid(out), [31.5, 31.5], atol=0.05)
    zooms.append(zoom)
  assert min(zooms) < 0.95 and max(zooms) > 1.05


def test_noise_std_and_clipping():
  image = np.full((128, 128, 1), 0.5, np.float32)
  out = aug.augment(image, np.random.default_rng(0), noise=0.05)
  diff = out - image
  assert diff.std() == pytest.approx(0.05, rel=0.05)
  assert abs(diff.mean()) < 0.005
  loud = aug.augment(image, np.random.default_rng(0), noise=1.0)
  assert loud.min() == 0.0 and loud.max() == 1.0


def test_random_resized_crop_stays_inside_and_magnifies():
  # A horizontal ramp: a crop stretched to full width has a smaller slope.
  ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))[..., None]
  for seed in range(5):
    out = aug.augment(ramp, np.random.default_rng(seed), crop=0.5, fill=-1.0)
    # Never samples outside the image (fill is -1).
    assert out.min() >= 0.0
    slope = np.diff(out[32, :, 0]).mean()
    assert np.sqrt(0.5 * 0.75) / 63 * 0.99 <= slope <= 1 / 63 * 1.001
    assert not np.allclose(out, ramp)


def test_fill_used_outside():
  image = np.full((32, 32, 1), 0.5, np.float32)
  out = aug.augment(image, np.random.default_rng(0), rotation=45, fill=1.0)
  # Corners come from outside the rotated square.
  assert out[0, 0, 0] == 1.0 and out[16, 16, 0] == 0.5


def test_config_mapping_and_configdict_match_kwargs():
  image = _blob()
  cfg = ml_collections.ConfigDict({'rotation': 15.0, 'noise': 0.02})
  a = aug.augment_from_config(image, np.random.default_rng(4), cfg)
  b = aug.augment_from_config(image, np.random.default_rng(4), dict(cfg))
  c = aug.augment(image, np.random.default_rng(4), rotation=15.0, noise=0.02)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, c)
  kwargs = aug.augment_kwargs(cfg)
  assert kwargs == dict(scale=0.0, rotation=15.0, translation=0.0, noise=0.02,
                        crop=0.0, fill=0.0)


def test_config_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"\['rotate'\].*valid keys"):
    aug.augment_kwargs({'rotate': 10})
  with pytest.raises(ValueError, match='crop'):
    aug.augment_kwargs({'crop': 1.5})
  with pytest.raises(ValueError, match='scale'):
    aug.augment(_blob(), np.random.default_rng(0), scale=-0.1)
  with pytest.raises(TypeError, match='noise'):
    aug.augment_kwargs({'noise': 'lots'})
  with pytest.raises(TypeError, match='mapping'):
    aug.augment_kwargs([('noise', 0.1)])


def test_fast_enough_for_a_data_loader():
  image = _blob()
  rng = np.random.default_rng(0)
  for _ in range(20):
    aug.augment(image, rng, **ALL_ON)
  times = []
  for _ in range(200):
    start = time.perf_counter()
    aug.augment(image, rng, **ALL_ON)
    times.append(time.perf_counter() - start)
  # Typically ~0.15 ms; the bound leaves room for a busy CI machine.
  assert np.median(times) < 3e-3
