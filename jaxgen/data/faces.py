"""Procedural frontal face portraits: the built-in data for a fresh machine.

``render_face(seed)`` draws a passport-style portrait (head and shoulders on
a plain backdrop), every attribute drawn from a generator seeded by ``seed``:
jaw and chin, skin tone, hair style and colour, eyes, brows, nose, lips,
ears, beard, glasses, clothes, backdrop and light direction. Shapes are drawn
with PIL at twice the output size and downsampled (anti-aliasing); soft
shadows and the directional light are applied in numpy at the output size,
which keeps a 128x128 face at a few ms. ``ProceduralFacePairs`` pairs each
face with its ``sketchify`` pencil sketch: sketch->photo data without files.
"""

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxgen.data import sketchify as sketchify_lib

# Palettes (RGB 0-255). Skin tones span light to deep brown; hair colours are
# weighted towards the common dark shades.
_SKIN = np.array([[250, 222, 200], [236, 196, 166], [214, 168, 130],
                  [180, 128, 92], [140, 94, 64], [96, 62, 42]])
_HAIR = np.array([[22, 18, 18], [45, 32, 26], [78, 52, 34], [120, 82, 50],
                  [150, 84, 46], [196, 160, 102], [150, 146, 142]])
_HAIR_P = [0.26, 0.22, 0.18, 0.12, 0.06, 0.1, 0.06]
_IRIS = np.array([[58, 36, 22], [96, 60, 30], [110, 96, 50], [70, 110, 80],
                  [72, 112, 160], [110, 124, 136]])
_IRIS_P = [0.35, 0.25, 0.1, 0.08, 0.14, 0.08]
_BACKDROP = np.array([[236, 236, 238], [150, 196, 228], [200, 202, 208],
                      [226, 214, 192], [120, 150, 180], [180, 210, 196]])
_STYLES = ('short', 'long', 'bob', 'curly', 'buzz', 'fringe')
_STYLE_P = {True: [0.42, 0.04, 0.06, 0.14, 0.22, 0.12],
            False: [0.08, 0.42, 0.22, 0.12, 0.0, 0.16]}
_SUPERSAMPLE = 2


def _mix(c1, c2, t):
  return np.asarray(c1, float) * (1 - t) + np.asarray(c2, float) * t


def _rgba(c):
  # Plain Python: this runs a few hundred times per face and np.clip's
  # overhead on three numbers dominated the drawing time.
  return tuple(min(255, max(0, int(v))) for v in c[:3]) + (255,)


class _Canvas:
  """Unit-square drawing on a foreground RGBA image and a shade layer.

  The shade layer starts at 128 (no change); lower values are shadows and
  higher values highlights. It is blurred before use, so shadows drawn as
  hard shapes end up soft, like shading on skin.
  """

  def __init__(self, px: int):
    self.px = px
    self.fg = Image.new('RGBA', (px, px), (0, 0, 0, 0))
    self.shade = Image.new('L', (px, px), 128)
    self.d = ImageDraw.Draw(self.fg)
    self.s = ImageDraw.Draw(self.shade)

  def pts(self, xy):
    return (np.asarray(xy, float) * self.px).ravel().tolist()

  def _on(self, shade, colour):
    """(draw, fill): shade values are plain ints, colours become RGBA."""
    if shade:
      return self.s, colour
    return self.d, None if colour is None else _rgba(colour)

  def poly(self, xy, colour, shade=False):
    draw, fill = self._on(shade, colour)
    draw.polygon(self.pts(xy), fill=fill)

  def ellipse(self, cx, cy, rx, ry, colour, shade=False, outline=None,
              width=0.0):
    draw, fill = self._on(shade, colour)
    draw.ellipse(self.pts([cx - rx, cy - ry, cx + rx, cy + ry]), fill=fill,
                 outline=None if outline is None else _rgba(outline),
                 width=max(1, round(width * self.px)))

  def line(self, xy, colour, width, shade=False):
    draw, fill = self._on(shade, colour)
    draw.line(self.pts(xy), fill=fill, width=max(1, round(width * self.px)),
              joint='curve')


def _arc(cx, cy, rx, ry, a0, a1, n=24, bumps=0.0, freq=0, phase=0.0):
  """Points on an (optionally scalloped) elliptic arc, angles in radians."""
  t = np.linspace(a0, a1, n)
  r = 1.0 + bumps * np.abs(np.sin(freq * t + phase))
  return np.stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)], -1)


def _resample(poly, n):
  """n points evenly spaced along a polyline (for matching two contours)."""
  s = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(poly, axis=0).T))])
  t = np.linspace(0, s[-1], n)
  return np.stack([np.interp(t, s, poly[:, k]) for k in (0, 1)], -1)


def _band(x, y0, y1):
  """Polygon between the curves (x, y0) and (x, y1)."""
  return np.concatenate([np.stack([x, y0], -1), np.stack([x, y1], -1)[::-1]])


def _face_outline(g, n=48):
  """Face contour, clockwise from the right cheek; jaw shaped by g."""
  t = np.linspace(0, 2 * np.pi, n, endpoint=False)
  c, s = np.cos(t), np.sin(t)
  lower = s > 0
  # A superellipse exponent above 2 squares the jaw (and keeps the forehead
  # broad enough for the hair to meet it at the temples); the taper narrows
  # the lower face towards the chin (oval, heart or V shapes).
  x = np.sign(c) * np.abs(c) ** np.where(lower, 2.0 / g['jaw_square'],
                                         2.0 / 2.3)
  x *= np.where(lower, 1.0 - g['taper'] * s ** 2, 1.0)
  y = np.sign(s) * np.abs(s) ** np.where(lower, 1.0, 0.9)
  return np.stack([g['cx'] + g['a'] * x, g['cy'] + g['b'] * y], -1)


def _params(seed: int) -> dict:
  """Draws every attribute of face ``seed`` (deterministic)."""
  r = np.random.default_rng(seed)
  male = bool(r.random() < 0.5)
  u = r.uniform
  a = 0.24 * u(0.93, 1.06) * u(0.94, 1.06) * (1.04 if male else 1.0)
  t = r.beta(1.3, 1.8) * (len(_SKIN) - 1)
  i = min(int(t), len(_SKIN) - 2)
  bd = _BACKDROP[r.integers(len(_BACKDROP))] * u(0.93, 1.05, 3)
  light = np.array([u(-0.7, 0.7), u(-0.6, -0.2), 1.0])
  g = dict(
      rng=r, male=male, a=a, b=a * u(1.28, 1.42),
      cx=0.5 + r.normal(0, 0.01), cy=0.46 + r.normal(0, 0.01),
      jaw_square=u(2.0, 2.9) if male else u(1.8, 2.3), taper=u(0.05, 0.3),
      skin=_mix(_SKIN[i], _SKIN[i + 1], t - i) * u(0.96, 1.03, 3),
      hair=_HAIR[r.choice(len(_HAIR), p=_HAIR_P)] * u(0.85, 1.15),
      iris=_IRIS[r.choice(len(_IRIS), p=_IRIS_P)],
      style=_STYLES[r.choice(len(_STYLES), p=_STYLE_P[male])],
      bg_top=bd * u(1.0, 1.08), bg_bottom=bd * u(0.8, 0.97),
      clothes=u(20, 235, 3) * (u(0.3, 1.0) if r.random() < 0.4 else 1.0),
      light=light / np.linalg.norm(light),
      glasses=r.random() < 0.14, beard=male and r.random() < 0.2,
      hair_w=u(0.98, 1.1), hair_h=u(0.95, 1.1), hairline=u(0.66, 0.8),
      part=r.choice([-1.0, 0.0, 1.0]), eye_w=a * u(0.36, 0.43),
      eye_open=u(0.2, 0.3), eye_tilt=u(-0.004, 0.008), eye_sep=u(0.4, 0.47),
      gaze=r.normal(0, 0.4), brow_h=u(0.2, 0.28), brow_arch=u(0.004, 0.016),
      brow_t=u(0.011, 0.018) * (1.3 if male else 1.0), nose_w=u(0.38, 0.52),
      nose_len=u(0.36, 0.44), mouth_w=u(0.72, 0.9),
      lip=[170, 60, 70] if not male and r.random() < 0.4 else [185, 95, 90],
      lip_t=u(0.3, 0.55), lip_up=u(0.008, 0.014), lip_low=u(0.012, 0.02),
      smile=u(-0.003, 0.008), frame=u(0, 120, 3), glasses_h=u(0.55, 0.8),
      neck_w=a * u(0.5, 0.6) * (1.1 if male else 1.0),
      shoulder_y=u(0.86, 0.9), shoulder_w=u(0.85, 1.0), collar=r.integers(3))
  g['moustache'] = g['beard'] or (male and r.random() < 0.12)
  return g


def _draw_hair(cv: _Canvas, g, back: bool):
  """Draws the hair behind the head (back) or over the face (front).

  Each part is drawn with its strands on a layer of its own and pasted
  through the hair shape, so strands never stray onto face or backdrop.
  """
  r, cx, cy, a, b, style = (g[k] for k in 'rng cx cy a b style'.split())
  # The hair follows a skull ellipse centred a little above the eyes and
  # adds volume on top (thickness) and at the sides (width).
  hy = cy - 0.1 * b
  bottom = {'long': 0.95, 'bob': cy + 0.62 * b, 'curly': cy + 0.45 * b}.get(
      style)
  thick = {'buzz': 0.04, 'curly': 0.3, 'short': 0.12}.get(style, 0.16)
  hx = a * (1.02 + thick * (0.3 if bottom is None else 0.6)) * g['hair_w']
  hb = b * (1.0 + thick) * g['hair_h']
  bumps = (0.05, 13, r.uniform(0, 6)) if style == 'curly' else ()
  top = _arc(cx, hy, hx, hb, np.pi, 2 * np.pi, 30, *bumps)
  colour = _mix(g['hair'], g['skin'], 0.45) if style == 'buzz' else g['hair']
  xs = np.linspace(1, -1, 15)
  if back and bottom is None:
    # Short hair: the mass over the skull down to the sideburns; the face is
    # drawn over it, leaving hair only around the head.
    cv.poly(np.concatenate([[[cx - a, cy + 0.12 * b]], top,
                            [[cx + a, cy + 0.12 * b]]]), colour * 0.9)
    return
  if back:
    # Long hair falls from the skull, widening towards the shoulders.
    w, colour = hx * (1.22 if style == 'long' else 1.08), colour * 0.82
    outer = np.concatenate([[[cx - w * 0.97, bottom - 0.06],
                             [cx - hx * 1.04, cy + 0.3 * b]], top,
                            [[cx + hx * 1.04, cy + 0.3 * b],
                             [cx + w * 0.97, bottom - 0.06]]])
    inner = np.stack([cx + xs * w * (1 - 0.1 * xs ** 2),
                      bottom - 0.02 * np.abs(np.sin(xs * 7))], -1)
  else:
    # Over the face: from the outer contour down to the hairline (or
    # fringe), plus locks down the cheeks for long hair.
    if style == 'fringe':
      front = np.stack([cx + xs * a * 0.92, cy - b * 0.38 + 0.08 * b * np.abs(
          xs) ** 3 + r.uniform(-0.006, 0.006, 15)], -1)
    else:
      # Arched hairline, higher at the temples, tilted by a side parting.
      arch = 0.16 * b * xs ** 2 * (1.4 if style == 'buzz' else 1.0)
      front = np.stack([cx + xs * a * 0.86, cy - b * g['hairline']
                        + g['part'] * xs * 0.05 * b - arch], -1)
    # Keep the hairline inside the head outline (a high, arched hairline
    # would otherwise poke out at the temples).
    rim = hy - hb * np.sqrt(np.clip(1 - ((front[:, 0] - cx) / hx) ** 2, 0, 1))
    front[:, 1] = np.maximum(front[:, 1], rim + 0.025)
    inner, outer = front, top
    if bottom:
      side_y = min(bottom, cy + 0.8 * b)
      inner = np.concatenate([[[cx + a * 0.9, side_y]], front,
                              [[cx - a * 0.9, side_y]]])
      outer = np.concatenate([[[cx - hx * 1.06, side_y]], top,
                              [[cx + hx * 1.06, side_y]]])
  shape = np.concatenate([outer, inner])
  layer = Image.new('RGBA', (cv.px, cv.px), (0, 0, 0, 0))
  mask = Image.new('L', (cv.px, cv.px), 0)
  ImageDraw.Draw(mask).polygon(cv.pts(shape), fill=255)
  main_draw, cv.d = cv.d, ImageDraw.Draw(layer)
  cv.poly(shape, colour)
  # Strands between matching points of the outer and inner contours (or
  # straight down for the back hair), so the sketch gets hair texture.
  o = _resample(outer, 64)
  i = o + [0, 0.5] if back else _resample(inner[::-1], 64)
  n = 16 if style == 'buzz' else 56
  j = r.integers(0, 64, n)
  u0, u1 = r.uniform(0.0, 0.3, n), r.uniform(0.6, 1.0, n)
  t = np.stack([u0, (u0 + u1) / 2, u1], 1)[..., None]  # [n, 3, 1]
  segs = o[j, None] + t * (i[j] - o[j])[:, None]
  segs[:, 1] += r.normal(0, 0.006, (n, 2))
  for seg, tint in zip(segs, colour * r.uniform(0.55, 1.3, (n, 1)) + 10):
    cv.line(seg, tint, 0.004)
  if style not in ('curly', 'buzz') and g['part'] and not back:
    x0 = cx + g['part'] * 0.3 * a
    cv.line([[x0, hy - hb], [x0, front[7, 1] + 0.005]], colour * 0.5, 0.006)
  cv.d = main_draw
  cv.fg.paste(layer, (0, 0), mask)
  if not back:
    cv.line(front + [0, 0.01], 80, 0.025, shade=True)  # Shadow on forehead.
    cv.line(_arc(cx, hy, hx * 0.7, hb * 0.85, 1.25 * np.pi, 1.75 * np.pi, 8),
            175, 0.02, shade=True)  # Sheen on the crown.


def _draw_eye(cv: _Canvas, g, ex, ey, side):
  """One eye: socket shadow, white, iris, pupil, catch-light, lids."""
  w, h, skin = g['eye_w'], g['eye_w'] * g['eye_open'], g['skin']
  xs = np.linspace(-1, 1, 13)
  tilt = g['eye_tilt'] * xs * side
  upper = np.stack([ex + xs * w / 2, ey - h * (1 - xs ** 2) ** 0.7 - tilt
                    + 0.15 * h * xs * side], -1)
  lower = np.stack([ex - xs * w / 2, ey + 0.75 * h * (1 - xs ** 2) ** 0.9
                    + tilt], -1)
  cv.ellipse(ex, ey - 0.1 * h, w * 0.75, h * 2.1, 96, shade=True)
  cv.poly(np.concatenate([upper, lower]), _mix(skin, [240, 236, 232], 0.8))
  ir, ix = h * 0.95, ex + g['gaze'] * w * 0.08
  cv.ellipse(ix, ey, ir, ir, g['iris'], outline=g['iris'] * 0.45,
             width=0.003)
  cv.ellipse(ix, ey, ir * 0.45, ir * 0.45, (12, 10, 10))
  cv.ellipse(ix + ir * 0.35 * g['light'][0], ey - ir * 0.35, ir * 0.18,
             ir * 0.18, (250, 250, 250))
  # Skin over the parts of the iris outside the lids.
  x0, x1, dy = ex - w / 2 - 0.01, ex + w / 2 + 0.01, ir + 0.02
  cv.poly(np.concatenate([upper, [[x1, ey - dy], [x0, ey - dy]]]), skin)
  cv.poly(np.concatenate([lower, [[x0, ey + dy], [x1, ey + dy]]]), skin)
  cv.line(upper, _mix(g['hair'], (15, 12, 12), 0.6),
          0.006 if g['male'] else 0.008)
  cv.line(lower[2:-2], skin * 0.62, 0.0025)
  cv.line(upper[2:-2] - [0, h * 0.9], skin * 0.72, 0.003)  # Lid crease.


def _draw_features(cv: _Canvas, g):
  """Eyes, brows, nose, mouth, facial hair and glasses."""
  cx, cy, a, b, skin = g['cx'], g['cy'], g['a'], g['b'], g['skin']
  ey = cy + 0.02 * b
  dark = -1 if g['light'][0] > 0 else 1  # The side away from the light.
  for side in (-1, 1):
    _draw_eye(cv, g, cx + side * g['eye_sep'] * a, ey, side)
    # Brow: a tapered arch, thicker at the inner end.
    bw, xs = g['eye_w'] * 1.35, np.linspace(0, 1, 9)
    x = cx + side * (g['eye_sep'] * a - bw * 0.45 + xs * bw)
    y = ey - g['brow_h'] * b - g['brow_arch'] * np.sin(np.pi * xs ** 0.8)
    th = g['brow_t'] * (1 - 0.6 * xs)
    brow = _mix(g['hair'], (30, 24, 20), 0.35)
    cv.poly(_band(x, y - th / 2, y + th / 2),
            brow * (0.75 if g['hair'].mean() > 140 else 1.0))
  # Nose: mostly soft shading (side wall, bridge highlight, tip, the shadow
  # underneath) plus nostrils and wing creases.
  ny, nw = cy + g['nose_len'] * b, g['nose_w'] * a
  cv.poly([[cx + dark * nw * 0.2, ey - 0.05 * b], [cx + dark * nw * 0.6,
           ny - 0.01], [cx + dark * nw * 0.1, ny - 0.01]], 80, shade=True)
  cv.line([[cx - dark * nw * 0.15, ey], [cx - dark * nw * 0.1, ny - 0.03]],
          180, 0.01, shade=True)
  cv.ellipse(cx, ny + 0.02, nw * 0.55, 0.014, 60, shade=True)
  cv.ellipse(cx, ny - 0.012, nw * 0.2, 0.012, 190, shade=True)
  for s in (-1, 1):
    cv.ellipse(cx + s * nw * 0.26, ny + 0.004, nw * 0.14, nw * 0.07,
               skin * 0.38)
    a0 = -np.pi / 2 if s > 0 else np.pi / 2  # Crease opens to the tip.
    cv.line(_arc(cx + s * nw * 0.36, ny - 0.008, nw * 0.17, 0.02, a0,
                 a0 + np.pi, 8), skin * 0.6, 0.006)
  # Mouth: upper lip with a cupid's bow, fuller lower lip, a dark parting
  # line, a highlight on the lower lip and a shadow under it.
  my, mw = cy + 0.66 * b, g['mouth_w'] * a
  lip = _mix(skin, g['lip'], g['lip_t'])
  xs = np.linspace(-1, 1, 15)
  x, y = cx + xs * mw / 2, my + g['smile'] * xs ** 2
  bow = g['lip_up'] * (1 - xs ** 2) ** 0.6 * (1 - 0.35 * np.exp(-(xs * 6) ** 2))
  cv.poly(_band(x, y, y - bow), lip * 0.92)
  cv.poly(_band(x, y, y + g['lip_low'] * (1 - xs ** 2) ** 0.7), lip)
  cv.line(np.stack([x, y], -1), lip * 0.42, 0.005)
  cv.ellipse(cx, my + g['lip_low'] * 0.45, mw * 0.18, g['lip_low'] * 0.2, 185,
             shade=True)
  cv.ellipse(cx, my + g['lip_low'] * 1.4, mw * 0.3, 0.012, 80, shade=True)
  if g['moustache']:
    cv.poly(_band(cx + xs * mw * 0.64, my - 0.04 + 0.015 * xs ** 2,
                  my - g['lip_up'] * 0.7 + 0.025 * xs ** 4), g['hair'] * 0.9)
  if g['beard']:  # From the jaw line (right to left) up to under the lip.
    under_lip = np.stack([x * 1.4 - cx * 0.4, my + g['lip_low'] + 0.012
                          + 0.02 * np.cos(xs * 1.4)], -1)
    cv.poly(np.concatenate([_face_outline(g, 48)[3:22], under_lip]),
            _mix(g['hair'], skin, 0.25))
  if g['glasses']:  # Rims, temples to the ears, bridge, cast shadow.
    rw, rh, fr = g['eye_w'] * 0.85, g['eye_w'] * g['glasses_h'], g['frame']
    for s in (-1, 1):
      gx = cx + s * g['eye_sep'] * a
      cv.ellipse(gx, ey, rw, rh, None, outline=fr, width=0.007)
      cv.line([[gx + s * rw, ey - rh * .3], [cx + s * a * 1.02, ey - rh * .5]],
              fr, 0.006)
      cv.ellipse(gx, ey + rh * 0.9, rw, 0.012, 110, shade=True)
    cv.line(_arc(cx, ey - rh * 0.05, g['eye_sep'] * a - rw, 0.012, np.pi,
                 2 * np.pi, 6), fr, 0.006)


def render_face(seed: int, size: int = 128) -> np.ndarray:
  """Renders one procedural frontal face portrait.

  Args:
    seed: any integer; the same seed always gives the same face.
    size: output side in pixels.

  Returns:
    float32 [size, size, 3] RGB image in [0, 1].
  """
  g, cv = _params(seed), _Canvas(size * _SUPERSAMPLE)
  cx, cy, a, b, skin = g['cx'], g['cy'], g['a'], g['b'], g['skin']
  sy, nw = g['shoulder_y'], g['neck_w']
  # Clothes: trapezius slopes from the neck to rounded shoulder tips; then
  # hair behind the head, the neck and the chin's shadow on it.
  xs = nw * 0.9 + g['shoulder_w'] * np.array([0, .1, .2, .3, .38, .44, .48,
                                              .52])
  ys = sy + np.array([-0.045, -0.04, -0.025, -0.005, 0.015, 0.04, 0.08, 0.2])
  cv.poly(_band(np.concatenate([cx - xs[::-1], cx + xs]),
                np.concatenate([ys[::-1], ys]), np.full(16, 1.1)),
          g['clothes'])
  _draw_hair(cv, g, back=True)
  if g['collar'] == 0:  # V neck.
    cv.poly([[cx - nw * 1.1, sy - 0.04], [cx + nw * 1.1, sy - 0.04],
             [cx, sy + 0.1]], skin * 0.9)
  cv.poly([[cx - nw, cy + 0.5 * b], [cx + nw, cy + 0.5 * b],
           [cx + nw * 1.1, sy - 0.035], [cx - nw * 1.1, sy - 0.035]],
          skin * 0.96)
  if g['collar'] == 1:  # Shirt collar.
    for s in (-1, 1):
      cv.poly([[cx + s * nw * 1.15, sy - 0.02], [cx + s * nw * 0.1, sy + 0.06],
               [cx + s * nw * 1.7, sy + 0.045]], _mix(g['clothes'], 255, 0.6))
  cv.ellipse(cx, cy + b * 0.97, nw * 1.3, 0.04, 80, shade=True)
  for s in (-1, 1):  # Ears, with a darker inner fold.
    ex = cx + s * a * 0.98
    cv.ellipse(ex, cy + 0.12 * b, a * 0.14, b * 0.24, skin * 0.93)
    a0 = -np.pi / 2 if s > 0 else np.pi / 2
    cv.line(_arc(ex, cy + 0.1 * b, a * 0.07, b * 0.15, a0, a0 + np.pi, 8),
            skin * 0.7, 0.004)
  cv.poly(_face_outline(g), skin)
  # Cheek and jaw shading on the side away from the light; chin highlight.
  dark = -1 if g['light'][0] > 0 else 1
  cv.ellipse(cx + dark * a * 0.85, cy + 0.3 * b, a * 0.25, b * 0.45, 100,
             shade=True)
  cv.ellipse(cx, cy + 0.9 * b, a * 0.25, 0.012, 170, shade=True)
  _draw_features(cv, g)
  _draw_hair(cv, g, back=False)
  return _finish(cv, g, size)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Pixel-centre coordinates and the backdrop's soft studio-light glow."""
  yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
  glow = np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.15)
  return yy, xx, (0.92 + 0.1 * glow)[..., None]


def _finish(cv: _Canvas, g, size: int) -> np.ndarray:
  """Downsamples, applies light and soft shadows, composites the backdrop."""
  # PIL resizes RGBA premultiplied and returns straight colours, so edges
  # composite without dark fringes.
  fg = np.asarray(cv.fg.resize((size, size), Image.Resampling.BOX),
                  np.float32) * np.float32(1 / 255)
  shade = cv.shade.resize((size, size), Image.Resampling.BOX).filter(
      ImageFilter.GaussianBlur(size * 0.018))
  shade = (np.asarray(shade, np.float32) - 128) * np.float32(1 / 128)
  yy, xx, glow = _grid(size)
  # Lambert shading of a sphere around the head, so the face is lit from
  # one side and its rim and the neck fall off into shadow.
  lx, ly, lz = (float(v) for v in g['light'])
  nx = (xx - float(g['cx'])) * float(1 / (g['a'] * 1.35))
  ny = (yy - float(g['cy'])) * float(1 / (g['b'] * 1.35))
  nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
  light = 0.62 + 0.45 * np.clip(nx * lx + ny * ly + nz * lz, 0, 1)
  light *= 1 + np.where(shade < 0, 0.55, 0.35) * shade
  top, bottom = np.float32(g['bg_top'] / 255), np.float32(g['bg_bottom'] / 255)
  bg = (top + (bottom - top) * yy[..., None]) * glow
  out = bg + fg[..., 3:] * (fg[..., :3] * light[..., None] - bg)
  return np.clip(out, 0, 1).astype(np.float32)


class ProceduralFacePairs:
  """Random-access source of (sketch, photo) pairs of procedural faces.

  Follows grain's RandomAccessDataSource protocol (``__len__``,
  ``__getitem__``). Element ``i`` is the face of seed ``(seed, offset + i)``
  (mixed by ``np.random.SeedSequence``, so different seeds never share
  faces) with its sketch: ``{'sketch': float32 [size, size, 1], 'photo':
  float32 [size, size, 3]}``, both in [0, 1]. ``offset`` carves disjoint
  train/eval ranges out of one seed.
  """

  def __init__(self, num: int = 10000, size: int = 128, seed: int = 0,
               sketch_method: str = 'xdog', offset: int = 0):
    if num < 0:
      raise ValueError(f'num must be >= 0, got {num}')
    if sketch_method not in sketchify_lib.METHODS:
      raise ValueError(f'unknown sketch method {sketch_method!r}; choose one '
                       f'of {", ".join(sketchify_lib.METHODS)}')
    self._num, self._size, self._seed = num, size, seed
    self._method, self._offset = sketch_method, offset

  def __len__(self) -> int:
    return self._num

  def face_seed(self, index: int) -> int:
    """Returns the ``render_face`` seed of element ``index``."""
    seq = np.random.SeedSequence([self._seed, self._offset + index])
    return int(seq.generate_state(1, np.uint64)[0])

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if index < 0:
      index += self._num
    if not 0 <= index < self._num:
      raise IndexError(f'index {index} out of range for {self._num} faces')
    photo = render_face(self.face_seed(index), self._size)
    sketch = sketchify_lib.sketchify(photo, self._method)
    return {'sketch': sketch[..., None], 'photo': photo}

  def __repr__(self) -> str:
    return (f'ProceduralFacePairs(num={self._num}, size={self._size}, '
            f'seed={self._seed}, sketch_method={self._method!r}, '
            f'offset={self._offset})')
