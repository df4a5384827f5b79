"""Synthetic test data: realistic-looking fake signature scans and folders.

Real signature scans (grey uneven paper, a ruled box around the signing area,
ink of varied thickness, compression noise) cannot live in the repository, so
tests draw look-alikes with known ground truth. Everything is deterministic
given the seed. Import as `from tests import fakes`.
"""

import io
import os
from typing import List, NamedTuple, Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw
from scipy import ndimage

# Drawing happens at this multiple of the final size and is box-downsampled,
# which anti-aliases the strokes like a real camera would.
_SUPERSAMPLE = 2


class FakeScan(NamedTuple):
  """A fake scan and its ground truth.

  Attributes:
    image: uint8 [H, W] greyscale scan (ink dark on light paper).
    ink: bool [H, W], True where the signature ink covers at least half a
      pixel (dust specks are not ink).
    box: (top, bottom, left, right) outer edges of the ruled box border, in
      pixels, half-open.
  """
  image: np.ndarray
  ink: np.ndarray
  box: Tuple[int, int, int, int]


def _smooth_curve(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                  num_points: int = 160, sort_x: bool = False) -> np.ndarray:
  """A smooth random curve (Catmull-Rom through random points) in a box.

  With `sort_x` it runs left to right from edge to edge of the box, like
  cursive writing.
  """
  k = int(rng.integers(4, 8))
  ctrl = lo + rng.random((k, 2)) * (hi - lo)
  if sort_x:
    ctrl[:, 0] = np.sort(ctrl[:, 0])
    ctrl[0, 0], ctrl[-1, 0] = lo[0], hi[0]
  ctrl = np.concatenate([ctrl[:1], ctrl, ctrl[-1:]])
  t = np.linspace(0.0, k - 1, num_points, endpoint=False)
  i = np.floor(t).astype(int) + 1
  u = (t - (i - 1))[:, None]
  p0, p1, p2, p3 = ctrl[i - 1], ctrl[i], ctrl[i + 1], ctrl[i + 2]
  # Catmull-Rom interpolates the control points with a C1 curve.
  return 0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) *
                u ** 2 + (-p0 + 3 * p1 - 3 * p2 + p3) * u ** 3)


def _ink_coverage(rng: np.random.Generator, size: Tuple[int, int],
                  area: Tuple[float, float, float, float]) -> np.ndarray:
  """Draws a few strokes of varied width; returns coverage [H, W] in [0, 1].

  Args:
    rng: Randomness.
    size: (H, W) of the output.
    area: (top, bottom, left, right) the stroke centres stay within.
  """
  h, w = size
  s = _SUPERSAMPLE
  canvas = Image.new('L', (w * s, h * s), 0)
  draw = ImageDraw.Draw(canvas)
  top, bottom, left, right = area
  base = max(2.0, 0.012 * min(h, w))  # Stroke width in output pixels.
  lo = np.array([left, top], np.float64) * s
  hi = np.array([right, bottom], np.float64) * s
  for k in range(int(rng.integers(2, 5))):
    # The first stroke spans the whole width, like a signature's main body.
    pts = _smooth_curve(rng, lo, hi, sort_x=(k == 0))
    phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(1.0, 4.0)
    scale = rng.uniform(0.8, 1.6)
    widths = base * scale * (1.0 + 0.45 * np.sin(
        phase + freq * np.linspace(0, 2 * np.pi, len(pts))))
    for (x0, y0), (x1, y1), wd in zip(pts[:-1], pts[1:], widths):
      r = 0.5 * wd * s
      draw.line([(x0, y0), (x1, y1)], fill=255, width=max(1, int(2 * r)))
      draw.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=255)
  small = canvas.resize((w, h), Image.BOX)
  return np.asarray(small, np.float32) / 255.0


def fake_scan(seed: int, size: Tuple[int, int] = (240, 400)) -> FakeScan:
  """Draws a fake signature scan with its ground truth.

  Args:
    seed: Seed; equal seeds give identical scans.
    size: (H, W) in pixels.

  Returns:
    A `FakeScan`.
  """
  rng = np.random.default_rng(seed)
  h, w = size
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  # Paper: a lighting gradient in a random direction, low-frequency blotches
  # and per-pixel grain.
  angle = rng.uniform(0, 2 * np.pi)
  ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
  paper = rng.uniform(0.68, 0.8) + rng.uniform(0.06, 0.12) * (ramp - 0.5)
  blotch = ndimage.gaussian_filter(rng.standard_normal((h, w)),
                                   sigma=min(h, w) / 6.0)
  paper = paper + 0.03 * blotch / max(float(blotch.std()), 1e-6)
  paper = paper + 0.015 * rng.standard_normal((h, w))

  # Ruled box border, inset from the image edge; outside it the paper is a
  # little brighter (the white margin around a printed box).
  ins = [int(rng.uniform(0.02, 0.05) * min(h, w)) for _ in range(4)]
  box = (ins[0], h - ins[1], ins[2], w - ins[3])
  thick = max(2, int(round(min(h, w) / 100)))
  outside = ((yy < box[0]) | (yy >= box[1]) | (xx < box[2]) | (xx >= box[3]))
  paper = np.where(outside, np.minimum(paper + 0.1, 0.95), paper)
  line = outside.copy()
  line[box[0] + thick:box[1] - thick, box[2] + thick:box[3] - thick] = True
  line = ~line & ~outside
  image = np.where(line, rng.uniform(0.25, 0.4), paper)

  # The signature keeps clear of the border by a good margin.
  bh, bw = box[1] - box[0], box[3] - box[2]
  area = (box[0] + 0.25 * bh, box[1] - 0.25 * bh,
          box[2] + 0.18 * bw, box[3] - 0.18 * bw)
  cov = _ink_coverage(rng, size, area)
  ink_level = rng.uniform(0.08, 0.22)
  image = image * (1.0 - cov) + ink_level * cov

  # A few dust specks (1-2 pixels) anywhere inside the box.
  for _ in range(6):
    y = int(rng.integers(box[0] + 3 * thick, box[1] - 3 * thick))
    x = int(rng.integers(box[2] + 3 * thick, box[3] - 3 * thick))
    image[y:y + int(rng.integers(1, 3)), x:x + int(rng.integers(1, 3))] *= (
        rng.uniform(0.6, 0.8))

  u8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  # Camera/scanner compression artefacts.
  buf = io.BytesIO()
  Image.fromarray(u8).save(buf, format='JPEG',
                           quality=int(rng.integers(60, 85)))
  buf.seek(0)
  u8 = np.asarray(Image.open(buf).convert('L'), np.uint8).copy()
  return FakeScan(image=u8, ink=cov >= 0.5, box=box)


def draw_fake_scan(seed: int, size: Tuple[int, int] = (240, 400)
                   ) -> np.ndarray:
  """A realistic fake signature scan, uint8 [H, W] (see `fake_scan`)."""
  return fake_scan(seed, size).image


def ink_bbox(mask: np.ndarray) -> Tuple[int, int, int, int]:
  """Half-open (top, bottom, left, right) bounding box of a bool mask."""
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def write_signature_folder(root: str, num_signers: int = 4,
                           per_signer: int = 3, seed: int = 0,
                           size: Tuple[int, int] = (120, 200)) -> List[str]:
  """Writes fake scans as root/signer_XX/NN.png.

  Args:
    root: Folder to create (or reuse).
    num_signers: Number of signer sub-folders.
    per_signer: Images per signer.
    seed: Base seed; every image gets its own derived seed.
    size: (H, W) of each scan.

  Returns:
    The written paths, sorted.
  """
  paths = []
  for i in range(num_signers):
    folder = os.path.join(root, f'signer_{i:02d}')
    os.makedirs(folder, exist_ok=True)
    for j in range(per_signer):
      path = os.path.join(folder, f'{j:02d}.png')
      image = draw_fake_scan(seed * 100_003 + i * 1_009 + j, size)
      Image.fromarray(image).save(path)
      paths.append(path)
  return sorted(paths)


def write_truncated_png(path: str, seed: int = 0,
                        size: Tuple[int, int] = (60, 100)) -> str:
  """Writes the first half of a valid PNG of a fake scan to `path`."""
  buf = io.BytesIO()
  Image.fromarray(draw_fake_scan(seed, size)).save(buf, format='PNG')
  data = buf.getvalue()
  with open(path, 'wb') as f:
    f.write(data[:len(data) // 2])
  return path
