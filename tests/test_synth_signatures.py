"""Tests for the procedural signature generator."""

import dataclasses
import math

import numpy as np
import pytest

from jaxgen.data import synth_signatures as ss


def _images(source):
  return np.stack([source[i]['image'][..., 0] for i in range(len(source))])


def test_records_have_the_documented_shape_dtype_and_range():
  source = ss.SyntheticSignatures([4, 9], per_writer=3, res=32, seed=0)
  assert len(source) == 6
  for i in range(len(source)):
    record = source[i]
    image = record['image']
    assert image.shape == (32, 32, 1) and image.dtype == np.float32
    assert image.min() >= 0.0 and image.max() <= 1.0
    # Ink is 1 on a 0 background: solid strokes reach ~1, corners are empty.
    assert image.max() > 0.9
    assert image[0, 0, 0] == 0.0 and image[-1, -1, 0] == 0.0
    assert record['writer'].dtype == np.int32 and record['writer'].shape == ()
  assert [int(source[i]['writer']) for i in range(6)] == [4, 4, 4, 9, 9, 9]


def test_render_signature_returns_a_2d_float32_image():
  image = ss.render_signature(ss.writer_style(0, 1),
                              np.random.default_rng(0), res=48)
  assert image.shape == (48, 48) and image.dtype == np.float32
  # Dark-on-white scans inverted: ink near 1 on a zero background, a
  # stroke (not a blot) covering a small part of the image.
  assert image.max() > 0.9 and image[0, 0] == 0.0 and image[-1, -1] == 0.0
  assert 0.01 < np.mean(image > 0.5) < 0.4


def test_same_inputs_give_bit_identical_images_in_any_order():
  a = ss.SyntheticSignatures(range(3), per_writer=3, res=32, seed=5)
  b = ss.SyntheticSignatures(range(3), per_writer=3, res=32, seed=5)
  forward = [a[i]['image'] for i in range(len(a))]
  backward = [b[i]['image'] for i in reversed(range(len(b)))][::-1]
  for x, y in zip(forward, backward):
    np.testing.assert_array_equal(x, y)
  # A record depends on (seed, writer, sample), not on its position.
  c = ss.SyntheticSignatures([7, 2], per_writer=3, res=32, seed=5)
  np.testing.assert_array_equal(c[4]['image'], a[7]['image'])
  np.testing.assert_array_equal(a[-1]['image'], a[len(a) - 1]['image'])


def test_global_numpy_random_state_is_untouched():
  np.random.seed(123)
  expected = np.random.random()
  np.random.seed(123)
  ss.SyntheticSignatures([0], per_writer=2, res=32)[1]
  ss.writer_style(3, 3)
  assert np.random.random() == expected


def test_writer_style_is_deterministic_and_frozen():
  style = ss.writer_style(0, 3)
  assert style == ss.writer_style(0, 3)
  assert style != ss.writer_style(1, 3)
  assert style.num_components >= 2
  with pytest.raises(dataclasses.FrozenInstanceError):
    style.slant = 0.0


def test_writers_seeds_and_samples_all_change_the_image():
  source = ss.SyntheticSignatures(range(4), per_writer=2, res=32, seed=0)
  images = _images(source)
  # Samples of one writer vary a little (repeated signatures are not copies).
  assert not np.array_equal(images[0], images[1])
  styles = [ss.writer_style(0, w) for w in range(4)]
  assert len({s.strokes for s in styles}) == 4
  for i in range(0, 8, 2):
    for j in range(i + 2, 8, 2):
      assert np.abs(images[i] - images[j]).mean() > 0.02
  other_seed = ss.SyntheticSignatures(range(4), per_writer=2, res=32, seed=1)
  assert not np.array_equal(images[0], other_seed[0]['image'][..., 0])


def test_samples_of_a_writer_are_closer_than_samples_of_different_writers():
  num_writers, per_writer = 6, 4
  source = ss.SyntheticSignatures(range(num_writers), per_writer, res=32,
                                  seed=0)
  flat = _images(source).reshape(len(source), -1)
  labels = np.repeat(np.arange(num_writers), per_writer)
  dist = np.abs(flat[:, None] - flat[None]).mean(-1)
  same = labels[:, None] == labels[None]
  off_diagonal = ~np.eye(len(flat), dtype=bool)
  within = dist[same & off_diagonal].mean()
  between = dist[~same].mean()
  assert within < 0.8 * between, (within, between)
  # Nearly every sample's nearest neighbour is by the same writer.
  np.fill_diagonal(dist, np.inf)
  assert (labels[dist.argmin(1)] == labels).mean() >= 0.8


@pytest.mark.parametrize('index', range(6))
def test_ink_is_cropped_to_its_box_and_centred_in_the_margin(index):
  res = 64
  image = ss.SyntheticSignatures(range(3), per_writer=2, res=res)[index]
  ink = image['image'][..., 0] > 0.05
  assert ink.sum() > 20
  rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
  margin = 0.05 * res  # The documented small margin: 3.2 px.
  spans = [(rows[0], rows[-1]), (cols[0], cols[-1])]
  for first, last in spans:
    # Centred, and never into the outer border.
    assert abs((first + last + 1) / 2 - res / 2) <= 1.5
    assert first >= 1 and last <= res - 2
  # The longer side of the ink box reaches the margin at both ends.
  first, last = max(spans, key=lambda s: s[1] - s[0])
  assert first <= margin + 1.5 and last >= res - 1 - margin - 1.5


def test_a_lognormal_arc_ends_where_its_move_says():
  # One submovement built from a move (dx, dy, turn) must land on (dx, dy),
  # whatever its timing, and its speed must peak at t0 + exp(mu - sigma^2).
  d, ths, the = ss._move_to_arc(0.3, 0.8, 150)
  comps = np.array([[0.1, -1.6, 0.25, d, ths, the]])
  pos, speed, ends = ss._sample_stroke(comps)
  np.testing.assert_allclose(pos[-1], [0.3, 0.8], atol=2e-3)
  np.testing.assert_allclose(ends[-1], [0.3, 0.8], atol=1e-9)
  t0, mu, sigma = comps[0, :3]
  t = np.linspace(t0 + math.exp(mu - 3.5 * sigma),
                  t0 + math.exp(mu + 3.5 * sigma), len(speed))
  assert abs(t[speed.argmax()] - (t0 + math.exp(mu - sigma**2))) < 2 * (
      t[1] - t[0])
  # The path length equals D: the arc is traversed exactly once.
  length = np.hypot(*np.diff(pos, axis=0).T).sum()
  assert abs(length - d) < 0.01 * d


def test_slow_pen_draws_thicker_lines_and_ends_taper():
  pos = np.stack([np.linspace(0, 10, 101), np.zeros(101)], axis=-1)
  speed = np.where(np.arange(101) < 50, 1.0, 4.0)
  widths = ss._stroke_widths(pos, speed, base=0.1, gamma=0.4)
  assert widths[30] > widths[70]
  assert widths[0] < widths[30] and widths[-1] < widths[70]


def test_split_writers_is_disjoint_covering_and_deterministic():
  train, test = ss.split_writers(50, 0.2, seed=3)
  assert len(test) == 10 and not set(train) & set(test)
  assert sorted(train + test) == list(range(50))
  assert (train, test) == ss.split_writers(50, 0.2, seed=3)
  assert test != ss.split_writers(50, 0.2, seed=4)[1]
  # A tiny fraction still holds out one writer, and train is never empty.
  assert len(ss.split_writers(10, 0.01, seed=0)[1]) == 1
  assert len(ss.split_writers(2, 0.9, seed=0)[0]) == 1
  assert ss.split_writers(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])


@pytest.mark.parametrize('args', [
    (0, 0.2, 0), (1, 0.5, 0), (10, -0.1, 0), (10, 1.0, 0), (10, 0.2, -1)])
def test_split_writers_rejects_bad_arguments(args):
  with pytest.raises(ValueError):
    ss.split_writers(*args)


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match='res'):
    ss.SyntheticSignatures([0], res=15)
  with pytest.raises(ValueError, match='per_writer'):
    ss.SyntheticSignatures([0], per_writer=0)
  with pytest.raises(ValueError, match='writers'):
    ss.SyntheticSignatures([])
  with pytest.raises(ValueError):
    ss.SyntheticSignatures([-1])
  with pytest.raises(ValueError, match='res'):
    ss.render_signature(ss.writer_style(0, 0), np.random.default_rng(0), 8)
  with pytest.raises(ValueError):
    ss.writer_style(0, -2)
  source = ss.SyntheticSignatures([0, 1], per_writer=2, res=32)
  for index in (4, -5, 100):
    with pytest.raises(IndexError):
      source[index]
