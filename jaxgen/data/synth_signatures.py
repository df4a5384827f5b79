"""Procedural handwritten signatures drawn with the sigma-lognormal model.

A fresh machine has no signature scans, so signatures are drawn here and
served as a random-access data source. Pen motion follows Plamondon's
kinematic theory: a stroke is a sum of overlapping submovements, each with a
lognormal speed profile (onset t0, log-time delay mu, log-response sigma,
amplitude D) and a direction turning from theta_s to theta_e in proportion to
the distance covered, i.e. a circular arc. Overlapping arcs blend into cursive
loops, garlands and cusps. A writer id (with a global seed) fixes a style:
a name template of letter-like component groups, slant, proportions, timing,
pen width; each sample perturbs it slightly, like repeated signatures of one
person. Output: ink = 1 on 0, cropped to the ink, padded square, resized.

Usage: python -m jaxgen.data.synth_signatures OUT.png  (a grid to look at,
a row per writer; --writers, --samples, --res and --seed change it).
"""

import dataclasses
import math
import operator
import sys
from typing import Sequence

from absl import flags
import numpy as np
from PIL import Image
from PIL import ImageDraw
from scipy import special

from jaxgen.data import signature_glyphs as glyphs

# Separate random streams for styles, samples and splits: changing how one
# is drawn never shifts the others.
_STYLE_TAG, _SAMPLE_TAG, _SPLIT_TAG = 1, 2, 3
_SUPERSAMPLE = 4
_MARGIN = 0.05  # Fraction of the square side left blank on each side.
_MIN_WIDTH_PX = 0.7  # Thinnest pen in output pixels, so ink never vanishes.
_STEPS_PER_COMPONENT = 20
_RUN = 4  # Points per block of constant pen width when drawing.


@dataclasses.dataclass(frozen=True)
class WriterStyle:
  """Everything that makes one writer's signatures recognisable.

  Lengths are in x-heights (the height of a lowercase letter), angles in
  radians, y up. A component is (t0, mu, sigma, D, theta_s, theta_e).
  """
  writer: int
  slant: float  # Horizontal shear, x += slant * y (positive leans right).
  baseline_angle: float  # Rotation of the whole signature.
  width_ratio: float  # Horizontal stretch of the whole signature.
  size_ratio: float  # Ascender height relative to the x-height.
  loopiness: float  # Width factor of loops (bigger = wider).
  sigma_range: tuple[float, float]  # Spread of the lognormal speed profiles.
  base_width: float  # Pen width, in x-heights.
  pressure_gamma: float  # How much slow movements thicken the line.
  # The template: per pen-down stroke, its components.
  strokes: tuple[tuple[tuple[float, ...], ...], ...]
  # Per stroke, the pen-lift offset from the previous stroke's end.
  gaps: tuple[tuple[float, float], ...]
  # (stroke, component, dx, dy): a dot offset from where that component
  # ends, e.g. over an "i".
  dots: tuple[tuple[int, int, float, float], ...]
  # None or (start, length, y offset, bend); start and length are fractions
  # of the name's width.
  underline: tuple[float, float, float, float] | None

  @property
  def num_components(self) -> int:
    return sum(len(s) for s in self.strokes)


def _move_to_arc(dx, dy, turn_deg):
  """(D, theta_s, theta_e) of the arc that moves the pen by (dx, dy)."""
  chord, heading = math.hypot(dx, dy), math.atan2(dy, dx)
  half = 0.5 * math.radians(turn_deg)
  d = chord if abs(half) < 1e-6 else chord * half / math.sin(half)
  return d, heading - half, heading + half


def _build_name(rng, cap_scale, asc_scale, loopiness, initial_only, single):
  """Returns the (D, theta_s, theta_e) groups of a name and its i groups."""
  groups, dot_groups = [], []
  if initial_only or rng.random() < 0.75:
    cap = glyphs.CAPITALS[rng.integers(len(glyphs.CAPITALS))]
    groups.append(tuple((dx, dy * cap_scale, t, False) for dx, dy, t, _ in cap))
  if not initial_only:
    p = np.array(list(glyphs.LOWER_WEIGHTS.values()), float)
    count = rng.integers(2, 7) if single else rng.integers(1, 5)
    for k in rng.choice(list(glyphs.LOWER_WEIGHTS), size=count,
                        p=p / p.sum()):
      if k == 'i':
        dot_groups.append(len(groups))
      groups.append(glyphs.LOWER[k])
    if rng.random() < 0.3:
      groups.extend([glyphs.WAVE] * int(rng.integers(2, 5)))
  # Personal letter shapes: each writer bends and scales moves a bit and
  # draws loops narrower or wider. One height factor per letter keeps the
  # letter's net rise at zero, so the baseline does not wander.
  shaped = []
  for group in groups:
    height = math.exp(rng.normal(0, 0.08))
    shaped.append(tuple(
        _move_to_arc(dx * (loopiness if abs(turn) > 120 else 1.0) +
                     rng.normal(0, 0.06),
                     dy * (asc_scale if tall else 1.0) * height,
                     turn + rng.normal(0, 10))
        for dx, dy, turn, tall in group))
  return shaped, dot_groups


def writer_style(seed: int, writer: int) -> WriterStyle:
  """Draws the deterministic style of one writer.

  Args:
    seed: global seed (non-negative).
    writer: writer id (non-negative).

  Returns:
    The writer's frozen WriterStyle.
  """
  if seed < 0 or writer < 0:
    raise ValueError(f'seed and writer must be >= 0, got {seed}, {writer}.')
  rng = np.random.default_rng(np.random.SeedSequence([seed, writer,
                                                      _STYLE_TAG]))
  size_ratio = rng.uniform(1.8, 2.8)
  loopiness = rng.uniform(0.5, 1.6)
  sigma_lo = rng.uniform(0.16, 0.26)
  sigma_range = (sigma_lo, sigma_lo + rng.uniform(0.04, 0.12))
  mu = rng.uniform(-1.9, -1.5)
  overlap = rng.uniform(0.55, 0.85)  # t0 spacing in units of exp(mu).
  connector = rng.uniform(0.25, 0.7)
  num_names = int(rng.choice([1, 2, 3], p=[0.35, 0.5, 0.15]))
  strokes, gaps, dots = [], [], []
  for n in range(num_names):
    groups, dot_groups = _build_name(
        rng, size_ratio / glyphs.NEUTRAL_ASCENDER * rng.uniform(1.0, 1.4),
        size_ratio / glyphs.NEUTRAL_ASCENDER, loopiness,
        initial_only=num_names == 3 and n == 0, single=num_names == 1)
    if n == num_names - 1 and rng.random() < 0.25:
      # A flourish: sweep down and back left under the name.
      groups.append((_move_to_arc(0.4, -0.7, -120),
                     _move_to_arc(-0.5 * len(groups), -0.2, 15)))
    comps, t0 = [], 0.0
    for gi, group in enumerate(groups):
      if gi > 0:  # A connector to the next letter, curving up.
        group = (_move_to_arc(connector * math.exp(rng.normal(0, 0.15)),
                              0.0, 70 + rng.normal(0, 10)),) + group
      for ci, (d, ths, the) in enumerate(group):
        if gi in dot_groups and ci == len(group) - 2 and rng.random() < 0.8:
          # Over the top of the i's upstroke.
          dots.append((n, len(comps), rng.normal(0.1, 0.1),
                       rng.uniform(0.4, 0.8)))
        c_mu = mu + rng.normal(0, 0.08)
        comps.append((t0, c_mu, rng.uniform(*sigma_range), d, ths, the))
        t0 += overlap * math.exp(c_mu + rng.normal(0, 0.1))
    strokes.append(tuple(comps))
    gaps.append((0.0, 0.0) if n == 0 else
                (rng.uniform(0.4, 1.3), rng.normal(0.0, 0.3)))
  underline = None
  if rng.random() < 0.3:
    underline = (rng.uniform(-0.15, 0.2), rng.uniform(0.6, 1.1),
                 rng.uniform(0.3, 0.9), rng.normal(0, 0.25))
  return WriterStyle(
      writer=writer, slant=float(np.clip(rng.normal(0.3, 0.25), -0.3, 0.9)),
      baseline_angle=rng.normal(0.05, 0.08),
      width_ratio=rng.uniform(0.7, 1.3), size_ratio=size_ratio,
      loopiness=loopiness, sigma_range=sigma_range,
      base_width=rng.uniform(0.07, 0.16),
      pressure_gamma=rng.uniform(0.15, 0.45), strokes=tuple(strokes),
      gaps=tuple(gaps), dots=tuple(dots), underline=underline)


def _arcs(comps, dt):
  """Displacements and velocities ([k, m, 2] each) of arcs at times `dt`.

  Args:
    comps: [k, 6] components (t0, mu, sigma, D, theta_s, theta_e).
    dt: [k, m] times since each component's onset t0.
  """
  _, mu, sigma, d, ths, the = (comps[:, i:i + 1] for i in range(6))
  active = dt > 0
  safe_dt = np.where(active, dt, 1.0)
  z = (np.log(safe_dt) - mu) / sigma
  frac = np.where(active, special.ndtr(z), 0.0)  # Share of D covered.
  speed = np.where(active, d * np.exp(-0.5 * z * z) /
                   (sigma * math.sqrt(2 * math.pi) * safe_dt), 0.0)
  turn = the - ths
  phi = ths + turn * frac
  # Closed form of integrating a unit vector turning at a constant rate per
  # unit distance: exact arcs, no step-size error.
  straight = np.abs(turn) < 1e-6
  radius = d / np.where(straight, 1.0, turn)
  x = np.where(straight, d * frac * np.cos(ths),
               radius * (np.sin(phi) - np.sin(ths)))
  y = np.where(straight, d * frac * np.sin(ths),
               radius * (np.cos(ths) - np.cos(phi)))
  return (np.stack([x, y], axis=-1),
          np.stack([speed * np.cos(phi), speed * np.sin(phi)], axis=-1))


def _sample_stroke(comps):
  """Samples a stroke densely in time.

  A lognormal is negligible outside t0 + exp(mu -/+ 3.5 sigma): evaluating
  each component only there (then adding its whole arc) keeps the cost linear
  in the number of components.

  Returns:
    [n, 2] positions from the stroke start, [n] speeds, and [k, 2] where the
    pen would be once each component is complete.
  """
  t0, mu, sigma = comps[:, 0], comps[:, 1], comps[:, 2]
  lo, hi = t0 + np.exp(mu - 3.5 * sigma), t0 + np.exp(mu + 3.5 * sigma)
  n = _STEPS_PER_COMPONENT * len(comps) + 2
  t = np.linspace(lo.min(), hi.max(), n)
  i0, i1 = np.searchsorted(t, lo), np.searchsorted(t, hi)
  idx = i0[:, None] + np.arange(max(1, int(np.max(i1 - i0))))
  inside = idx < i1[:, None]
  idx = np.minimum(idx, n - 1)
  disp, vel = _arcs(comps, t[idx] - t0[:, None])
  full = _arcs(comps, np.full((len(comps), 1), 1e9))[0][:, 0]
  after = np.zeros((n + 1, 2))
  np.add.at(after, i1, full)
  pos = np.cumsum(after, axis=0)[:n]
  flat, v = idx[inside], np.zeros((n, 2))
  for j in range(2):
    pos[:, j] += np.bincount(flat, disp[..., j][inside], minlength=n)
    v[:, j] = np.bincount(flat, vel[..., j][inside], minlength=n)
  return pos, np.hypot(v[:, 0], v[:, 1]), np.cumsum(full, axis=0)


def _stroke_widths(pos, speed, base, gamma):
  """Pen width along a stroke: slower is thicker; thin at pen-down/up."""
  w = base * np.clip((speed / (np.median(speed) + 1e-9) + 1e-3) ** -gamma,
                     0.6, 1.6)
  s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pos, axis=0).T))])
  ramp = np.minimum(s, s[-1] - s) / (2.0 * base)
  return w * (0.45 + 0.55 * np.clip(ramp, 0.0, 1.0))


def _perturb(comps, rng):
  """One repetition of a template stroke: small timing and shape noise."""
  c, k = comps.copy(), len(comps)
  steps = np.diff(c[:, 0], prepend=0.0) * np.exp(rng.normal(0, 0.08, k))
  c[:, 0] = np.cumsum(steps)
  c[:, 1] += rng.normal(0, 0.05, k)
  c[:, 2] *= np.exp(rng.normal(0, 0.06, k))
  # Mostly a common size change: independent ones would make the baseline
  # wander, which repeated real signatures do not.
  c[:, 3] *= np.exp(rng.normal(0, 0.03) + rng.normal(0, 0.025, k))
  c[:, 4:6] += rng.normal(0, 0.07, (k, 2))
  return c


def _draw_stroke(draw, pts, widths):
  """Draws a polyline whose width varies, as runs of constant width.

  Widths are averaged over blocks of _RUN points before rounding, so noise in
  the speed cannot split the line into many tiny (slow to draw) runs.
  """
  n = len(pts)
  starts = np.arange(0, n, _RUN)
  block = np.add.reduceat(widths, starts) / np.diff(np.append(starts, n))
  q = np.maximum(1, np.rint(block)).astype(np.int64)
  change = np.flatnonzero(np.diff(q)) + 1
  cuts = np.concatenate([[0], change * _RUN, [n]]).tolist()
  flat = pts.ravel().tolist()
  for a, b, w in zip(cuts[:-1], cuts[1:], q[np.r_[0, change]].tolist()):
    run = flat[2 * a:2 * min(b + 1, n)]  # Overlap the next run: no gaps.
    if len(run) > 2:
      draw.line(run, fill=255, width=w)
    # PIL leaves line ends square: round them (and the stroke's last point).
    for x, y in [run[:2]] + ([flat[-2:]] if b == n else []):
      draw.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)


def _layout(style, rng):
  """One sample's strokes: [(positions [n, 2], pen widths [n])], y up."""
  strokes, ends, origin = [], [], np.zeros(2)
  for gap, template in zip(style.gaps, style.strokes):
    pos, speed, comp_ends = _sample_stroke(_perturb(np.asarray(template), rng))
    origin = origin + gap + rng.normal(0, 0.15, 2)
    strokes.append((pos + origin, _stroke_widths(
        pos, speed, style.base_width, style.pressure_gamma)))
    ends.append(comp_ends + origin)
    origin = origin + pos[-1]
  for si, ci, dx, dy in style.dots:  # A short dab in a random direction.
    a = rng.uniform(0, 2 * math.pi)
    dab = np.array([[0.0, 0.0], [0.1 * math.cos(a), 0.1 * math.sin(a)]])
    at = ends[si][ci] + (dx, dy) + rng.normal(0, 0.05, 2)
    strokes.append((dab + at, np.full(2, 1.2 * style.base_width)))
  if style.underline is not None:
    start, length, y_off, bend = style.underline
    ink = np.concatenate([p for p, _ in strokes])
    lo, hi = ink.min(0), ink.max(0)
    half = 0.5 * length * (hi[0] - lo[0])
    mu, sigma = float(style.strokes[0][0][1]), style.sigma_range[1]
    comps = np.array([
        [0.0, mu, sigma, half, bend + 0.1, bend * 0.3],
        [0.7 * math.exp(mu), mu, sigma, half, bend * 0.3, -bend - 0.1]])
    pos, speed, _ = _sample_stroke(_perturb(comps, rng))
    pos += (lo[0] + start * (hi[0] - lo[0]), lo[1] - y_off)
    strokes.append((pos, _stroke_widths(pos, speed, style.base_width,
                                        style.pressure_gamma)))
  # Global shape: slant, stretch, baseline tilt (with per-sample jitter).
  slant = style.slant + rng.normal(0, 0.05)
  stretch = style.width_ratio * math.exp(rng.normal(0, 0.05))
  angle = style.baseline_angle + rng.normal(0, 0.04)
  rot = np.array([[math.cos(angle), -math.sin(angle)],
                  [math.sin(angle), math.cos(angle)]])
  affine = rot @ np.array([[stretch, stretch * slant], [0.0, 1.0]])
  return [(p @ affine.T, w) for p, w in strokes]


def render_signature(style: WriterStyle, rng: np.random.Generator,
                     res: int = 64) -> np.ndarray:
  """Renders one signature of `style`, varied by `rng`.

  Args:
    style: the writer's style (see writer_style).
    rng: source of the per-sample variation; the only randomness used.
    res: output side in pixels (>= 16).

  Returns:
    [res, res] float32 in [0, 1], ink = 1 on background 0, the ink cropped
    to its bounding box and centred in a square with a small margin.
  """
  if res < 16:
    raise ValueError(f'res must be >= 16, got {res}.')
  strokes = _layout(style, rng)
  # Crop to the ink: the square around the inked bounding box.
  lo = np.min([np.min(p - w[:, None] / 2, 0) for p, w in strokes], 0)
  hi = np.max([np.max(p + w[:, None] / 2, 0) for p, w in strokes], 0)
  canvas = res * _SUPERSAMPLE
  scale = canvas * (1 - 2 * _MARGIN) / np.max(hi - lo)
  img = Image.new('L', (canvas, canvas), 0)
  draw = ImageDraw.Draw(img)
  for p, w in strokes:
    pts = (p - 0.5 * (lo + hi)) * scale * (1.0, -1.0) + canvas / 2
    _draw_stroke(draw, pts, np.maximum(w * scale,
                                       _MIN_WIDTH_PX * _SUPERSAMPLE))
  out = np.asarray(img, dtype=np.float32).reshape(
      res, _SUPERSAMPLE, res, _SUPERSAMPLE).mean(axis=(1, 3))
  return out * np.float32(1 / 255)


class SyntheticSignatures:
  """Random-access source (grain RandomAccessDataSource protocol).

  Record i is sample i % per_writer of writer writers[i // per_writer]; each
  record depends only on (seed, writer, sample), never on access order.

  Args:
    writers: writer ids (non-negative), e.g. one side of split_writers.
    per_writer: samples per writer (>= 1).
    res: image side in pixels (>= 16).
    seed: global seed (non-negative) for styles and samples.
  """

  def __init__(self, writers: Sequence[int], per_writer: int = 20,
               res: int = 64, seed: int = 0):
    self._writers = tuple(int(w) for w in writers)
    if not self._writers:
      raise ValueError('writers must contain at least one writer id.')
    if min(self._writers) < 0 or seed < 0:
      raise ValueError('writer ids and seed must be non-negative.')
    if per_writer < 1:
      raise ValueError(f'per_writer must be >= 1, got {per_writer}.')
    if res < 16:
      raise ValueError(f'res must be >= 16, got {res}.')
    self._per_writer, self._res, self._seed = int(per_writer), int(res), seed
    self._styles = {}  # Cache: a style is a pure function of (seed, writer).
    # Cache of rendered images (rendering costs far more than a train step
    # of the demo models; 1224 records at 64 px are 20 MB of float32).
    self._images = {}

  def __len__(self) -> int:
    return len(self._writers) * self._per_writer

  def __getitem__(self, index: int) -> dict:
    """Returns {'image': float32 [res, res, 1], 'writer': np.int32}."""
    index = operator.index(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f'index {index} out of range for {len(self)} records.')
    index %= len(self)
    writer_pos, sample = divmod(index, self._per_writer)
    writer = self._writers[writer_pos]
    image = self._images.get(index)
    if image is None:
      if writer not in self._styles:
        self._styles[writer] = writer_style(self._seed, writer)
      rng = np.random.default_rng(
          np.random.SeedSequence([self._seed, writer, sample, _SAMPLE_TAG]))
      image = render_signature(self._styles[writer], rng, self._res)
      self._images[index] = image
    # A copy, so that in-place edits downstream cannot corrupt the cache.
    return {'image': image[..., None].copy(), 'writer': np.int32(writer)}


def split_writers(num_writers: int, test_fraction: float,
                  seed: int) -> tuple[list[int], list[int]]:
  """Splits writer ids 0..num_writers-1 into disjoint (train, test) lists.

  Args:
    num_writers: number of writers (>= 1; >= 2 when test_fraction > 0).
    test_fraction: fraction of writers held out, in [0, 1); when positive
      the test list gets at least one writer and the train list keeps one.
    seed: non-negative seed; the same arguments give the same split.

  Returns:
    (train ids, test ids), each sorted.
  """
  if num_writers < 1:
    raise ValueError(f'num_writers must be >= 1, got {num_writers}.')
  if not 0.0 <= test_fraction < 1.0:
    raise ValueError(f'test_fraction must be in [0, 1), got {test_fraction}.')
  if seed < 0:
    raise ValueError(f'seed must be non-negative, got {seed}.')
  if test_fraction == 0:
    return list(range(num_writers)), []
  if num_writers < 2:
    raise ValueError('need num_writers >= 2 to hold out test writers.')
  n_test = min(num_writers - 1, max(1, round(num_writers * test_fraction)))
  rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_TAG]))
  order = rng.permutation(num_writers)
  return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def write_grid(path: str, writers: int = 6, samples: int = 8,
               res: int = 64, seed: int = 0) -> None:
  """Writes a PNG grid of signatures, a row per writer, to look at.

  Args:
    path: output PNG path.
    writers: rows: writers 0..writers-1.
    samples: columns: samples per writer.
    res: side of each signature in pixels (>= 16).
    seed: global seed (non-negative).
  """
  source = SyntheticSignatures(range(writers), samples, res, seed)
  # A 2-pixel gutter between images; dark ink on white, as on paper.
  tiles = np.pad([source[i]['image'][..., 0] for i in range(len(source))],
                 ((0, 0), (0, 2), (0, 2)))
  grid = tiles.reshape(writers, samples, res + 2, res + 2)
  grid = grid.transpose(0, 2, 1, 3).reshape(writers * (res + 2), -1)
  Image.fromarray(np.uint8(np.rint(255 - 255 * grid))).save(path)


def _define(fv: flags.FlagValues, argv: list[str]) -> None:
  del argv
  flags.DEFINE_integer('writers', 6, 'Writers (rows).', flag_values=fv)
  flags.DEFINE_integer('samples', 8, 'Samples per writer (columns).',
                       flag_values=fv)
  flags.DEFINE_integer('res', 64, 'Side of each signature in pixels.',
                       flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'Global seed.', flag_values=fv)


def main(argv: Sequence[str] | None = None) -> int:
  """write_grid's command line, OUT [flags]; returns the exit status."""
  # Here, not at the top: jaxgen.cli loads the models and tasks, which
  # import this light data module.
  from jaxgen import cli  # pylint: disable=g-import-not-at-top
  return cli.run(
      lambda fv, out: write_grid(out, fv.writers, fv.samples, fv.res,
                                 fv.seed), _define, argv, __doc__,
      positional=('out',))


if __name__ == '__main__':
  sys.exit(main())
