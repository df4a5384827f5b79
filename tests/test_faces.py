"""Tests for jaxgen.data.faces: the procedural portrait renderer."""

import pickle

import numpy as np
import pytest

from jaxgen.data import faces
from jaxgen.data import sketchify


@pytest.mark.parametrize('size', [32, 64])
def test_render_shape_dtype_range(size):
  img = faces.render_face(0, size)
  assert img.shape == (size, size, 3)
  assert img.dtype == np.float32
  assert 0.0 <= img.min() and img.max() <= 1.0
  # Dark features (hair, eyes) and a light face: the renderer uses the range
  # (a face drawn at a fraction of its contrast would pass the line above).
  assert img.max() - img.min() > 0.6


def test_deterministic_per_seed():
  np.testing.assert_array_equal(faces.render_face(7, 48),
                                faces.render_face(7, 48))


def test_different_seeds_give_different_faces():
  imgs = [faces.render_face(s, 48) for s in range(8)]
  for i in range(len(imgs)):
    for j in range(i):
      assert np.abs(imgs[i] - imgs[j]).mean() > 0.02, (i, j)


def test_face_is_centred_portrait():
  # A face has detail (features, hair) in the middle and a smooth backdrop
  # in the top corners.
  img = faces.render_face(11, 64)
  corner = img[:8, :8]
  centre = img[20:44, 20:44]
  assert corner.std(axis=(0, 1)).max() < 0.03
  assert centre.std(axis=(0, 1)).min() > 0.05


def test_pairs_elements():
  ds = faces.ProceduralFacePairs(num=3, size=32, seed=1)
  assert len(ds) == 3
  e = ds[1]
  assert set(e) == {'sketch', 'photo'}
  assert e['sketch'].shape == (32, 32, 1) and e['photo'].shape == (32, 32, 3)
  assert e['sketch'].dtype == np.float32 and e['photo'].dtype == np.float32
  np.testing.assert_allclose(e['sketch'][..., 0],
                             sketchify.sketchify(e['photo']))
  np.testing.assert_array_equal(ds[-1]['photo'], ds[2]['photo'])
  with pytest.raises(IndexError):
    ds[3]


def test_pairs_determinism_seed_and_offset():
  a = faces.ProceduralFacePairs(num=4, size=32, seed=0)
  b = faces.ProceduralFacePairs(num=4, size=32, seed=0)
  np.testing.assert_array_equal(a[2]['photo'], b[2]['photo'])
  other = faces.ProceduralFacePairs(num=4, size=32, seed=1)
  assert np.abs(a[0]['photo'] - other[0]['photo']).mean() > 0.02
  # Seeds (0, 1) and (1, 0) must not collide.
  assert a.face_seed(1) != other.face_seed(0)
  shifted = faces.ProceduralFacePairs(num=2, size=32, seed=0, offset=2)
  np.testing.assert_array_equal(shifted[0]['photo'], a[2]['photo'])
  # Picklable, as grain worker processes require.
  c = pickle.loads(pickle.dumps(a))
  np.testing.assert_array_equal(c[1]['sketch'], a[1]['sketch'])


def test_pairs_sketch_method_and_errors():
  ds = faces.ProceduralFacePairs(num=1, size=32, sketch_method='dodge')
  e = ds[0]
  np.testing.assert_allclose(e['sketch'][..., 0],
                             sketchify.sketchify(e['photo'], 'dodge'))
  with pytest.raises(ValueError, match='unknown sketch method'):
    faces.ProceduralFacePairs(num=1, sketch_method='ink')
  with pytest.raises(ValueError, match='num'):
    faces.ProceduralFacePairs(num=-1)
