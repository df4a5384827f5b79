"""Preprocessing of scanned or photographed handwritten signatures.

Real scans have grey, unevenly lit paper, ruled box borders, dust and ink of
varied thickness. `image_io.load_grayscale` reads any PIL-readable file
(failing loudly on bad ones), `ink_mask` flattens the illumination,
thresholds with Otsu and removes speckle, box borders and edge debris, and
`preprocess_scan` crops to the ink, pads to a square and resizes. Only numpy,
scipy and PIL are used, so this runs in data-loader workers.
"""

from typing import Optional, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

BBox = Tuple[int, int, int, int]


def otsu_threshold(gray: np.ndarray, bins: int = 256) -> float:
  """Otsu's threshold: the level maximising the between-class variance.

  Args:
    gray: Array of values in [0, 1] (any shape).
    bins: Number of histogram bins over [0, 1].

  Returns:
    Threshold t in [0, 1]; pixels `< t` form the dark class. For a constant
    image the constant value is returned.
  """
  values = np.asarray(gray, np.float32).ravel()
  if values.size == 0:
    raise ValueError('otsu_threshold needs a non-empty image')
  # bincount of quantised values is much faster than np.histogram.
  idx = np.clip((values * bins).astype(np.int64), 0, bins - 1)
  hist = np.bincount(idx, minlength=bins).astype(np.float64)
  edges = np.linspace(0.0, 1.0, bins + 1)
  centers = 0.5 * (edges[:-1] + edges[1:])
  w0 = np.cumsum(hist)
  w1 = w0[-1] - w0
  m0 = np.cumsum(hist * centers)
  with np.errstate(divide='ignore', invalid='ignore'):
    mu0 = m0 / w0
    mu1 = (m0[-1] - m0) / w1
    between = w0 * w1 * (mu0 - mu1) ** 2
  between = np.nan_to_num(between, nan=-1.0)
  if between.max() <= 0:
    return float(values.mean())
  # Several bins can tie (empty bins between the modes); take the middle of
  # the plateau so the threshold sits halfway between the classes.
  best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
  k = int(round(0.5 * (best[0] + best[-1])))
  return float(edges[k + 1])


def estimate_background(gray: np.ndarray,
                        size: Optional[int] = None) -> np.ndarray:
  """Estimates the paper brightness under the ink.

  A grey closing (max then min filter) wider than any stroke erases the ink
  but keeps slowly varying paper and dark regions larger than the window (a
  table around the sheet). It runs on a max-pooled copy for speed.

  Args:
    gray: float array [H, W] in [0, 1], ink dark.
    size: Closing window in pixels; default a sixth of the shorter side.

  Returns:
    float32 [H, W] background estimate.
  """
  h, w = gray.shape
  if size is None:
    size = max(15, min(h, w) // 6)
  f = max(1, size // 8)
  hp, wp = -(-h // f) * f, -(-w // f) * f
  padded = np.pad(gray, ((0, hp - h), (0, wp - w)), mode='edge')
  small = padded.reshape(hp // f, f, wp // f, f).max(axis=(1, 3))
  k = max(3, size // f)
  bg = ndimage.grey_closing(small, size=(k, k), mode='nearest')
  bg = ndimage.gaussian_filter(bg, sigma=k / 4.0, mode='nearest')
  up = Image.fromarray(bg.astype(np.float32), mode='F').resize(
      (wp, hp), Image.BILINEAR)
  return np.asarray(up, np.float32)[:h, :w]


def normalize_illumination(gray: np.ndarray,
                           size: Optional[int] = None) -> np.ndarray:
  """Divides out `estimate_background`: float32 [H, W], paper ~1, ink dark."""
  gray = np.asarray(gray, np.float32)
  bg = estimate_background(gray, size)
  return np.clip(gray / np.maximum(bg, 1e-3), 0.0, 1.0)


def _long_runs(mask: np.ndarray, length: int) -> np.ndarray:
  """Marks pixels in horizontal runs of True at least `length` long."""
  h, w = mask.shape
  padded = np.zeros((h, w + 2), np.int8)
  padded[:, 1:-1] = mask
  d = np.diff(padded, axis=1)
  rows, starts = np.nonzero(d == 1)
  _, ends = np.nonzero(d == -1)
  out = np.zeros((h, w), bool)
  # Long runs are few (border lines), so a Python loop over them is cheap.
  for r, s, e in zip(*(x[(ends - starts) >= length]
                       for x in (rows, starts, ends))):
    out[r, s:e] = True
  return out


def box_border_region(mask: np.ndarray, min_length: float = 0.25,
                      band: float = 0.08, pad: int = 4) -> np.ndarray:
  """Finds ruled box borders near the image edges and what lies beyond them.

  Box borders are long, straight and near the edges; a signature's underline
  is rarely both. Lines are ink runs of at least `min_length` of the side (a
  3 pixel tolerance across copes with slight skew). Runs often cover only
  parts of a skewed or broken border, so a line is fitted to each piece and
  the strip along it plus everything outside it is returned.

  Args:
    mask: bool ink mask [H, W].
    min_length: Minimum run length as a fraction of the side it runs along.
    band: Only lines centred within this fraction of the shorter image side
      from an edge count as box borders; lines three times as long also
      count up to 2.5 times as far in.
    pad: Extra pixels cleared on the inner side of a fitted line.

  Returns:
    bool [H, W]: region to clear of ink (empty if no border was found).
  """
  out = np.zeros_like(mask)
  # On real scans borders sit within 0.06 of the shorter side from the edge,
  # and straight stretches of signatures (upright strokes, sides of loops) at
  # 0.1 or more; relative to the width they would be much closer.
  edge = max(2, int(band * min(mask.shape)))
  far_edge = int(2.5 * band * min(mask.shape))
  for axis in (0, 1):
    # Work on rows (horizontal lines); vertical lines via the transpose.
    m = mask if axis == 0 else mask.T
    hh, ww = m.shape
    tol = m.copy()  # Dilated by one pixel across the line direction.
    tol[1:] |= m[:-1]
    tol[:-1] |= m[1:]
    runs = _long_runs(tol, max(8, int(min_length * ww))) & m
    if not runs.any():
      continue
    labels, _ = ndimage.label(runs, structure=np.ones((3, 3), bool))
    region = np.zeros((hh, ww), bool)
    row_idx = np.arange(hh)[:, None]
    cols = np.arange(ww)
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
      rr, cc = np.nonzero(labels[sl] == i)
      rr, cc = rr + sl[0].start, cc + sl[1].start
      centre, length = rr.mean(), np.ptp(cc) / ww
      dist = min(centre, hh - 1 - centre)
      if not ((dist < edge and length >= min_length) or
              (dist < far_edge and length >= 3 * min_length)):
        continue
      slope, icpt = np.polyfit(cc, rr, 1) if np.ptp(cc) > 0 else (0, centre)
      # Half thickness from the per-column spread of the detected pixels.
      half = 0.5 * len(rr) / (np.ptp(cc) + 1) + pad
      line = (slope * cols + icpt)[None, :]
      if centre < hh / 2:
        region |= row_idx <= line + half
      else:
        region |= row_idx >= line - half
    out |= region if axis == 0 else region.T
  return out


# Clean-up tuning, chosen on real photographed signature scans:
# components lying entirely within this fraction of the shorter side from an
# edge are box-border leftovers (broken or skewed line ends, corners) ...
_EDGE_BAND = 0.05
# ... as are components with less than this fraction of the ink that come
# within twice that band of an edge (a signature's dots sit near its body).
_EDGE_SMALL_FRACTION = 0.02
# Components touching a detected box border with less than this fraction of
# the ink are stray marks; a signature crossing the border is much larger.
_BOX_TOUCH_FRACTION = 0.1


def ink_mask(gray: np.ndarray, *, normalize: bool = True,
             min_contrast: float = 0.2, min_size: Optional[int] = None,
             remove_lines: bool = True, remove_border: bool = True
             ) -> np.ndarray:
  """Segments the ink of a signature scan.

  After thresholding, connected components are dropped if they are speckle
  (small, or faint: no pixel darker than halfway between the threshold and
  the typical ink level), box borders or debris near the image edges.

  Args:
    gray: float array [H, W] in [0, 1], ink dark on light paper.
    normalize: Flatten uneven illumination before thresholding.
    min_contrast: Ink must be at least this much darker than the paper
      (relative), which caps the Otsu threshold so that a blank page yields
      no ink instead of thresholded paper grain.
    min_size: Components with fewer pixels are speckle; default 1.5e-4 of the
      image area (at least 4 pixels).
    remove_lines: Remove ruled box borders, everything outside them and small
      marks touching them.
    remove_border: Remove components touching the image border and debris
      near it.

  Returns:
    bool [H, W] ink mask (possibly empty).
  """
  return _segment(gray, normalize, min_contrast, min_size, remove_lines,
                  remove_border)[0]


def _segment(gray, normalize=True, min_contrast=0.2, min_size=None,
             remove_lines=True, remove_border=True):
  """Implements `ink_mask`; also returns the normalised image."""
  gray = np.asarray(gray, np.float32)
  if gray.ndim != 2:
    raise ValueError(f'Expected a greyscale [H, W] image, got {gray.shape}')
  norm = normalize_illumination(gray) if normalize else gray
  # A light blur keeps grain from fragmenting thin strokes.
  smooth = ndimage.gaussian_filter(norm, 0.7)
  t = min(otsu_threshold(smooth),
          float(np.median(smooth)) * (1.0 - min_contrast))
  mask = smooth < t
  region = box_border_region(mask) if remove_lines and mask.any() else None
  if region is not None and region.any():
    mask &= ~region
  labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
  if n == 0:
    return mask, norm
  sizes = np.bincount(labels.ravel(), minlength=n + 1)
  drop = np.zeros(n + 1, bool)
  drop[0] = True
  if min_size is None:
    min_size = max(4, int(1.5e-4 * gray.size))
  drop |= sizes < min_size
  # Hysteresis: real strokes have a dark core, while dust, paper fibres and
  # shadows that just cross the threshold do not.
  strong = 0.5 * (t + float(np.median(smooth[mask])))
  drop |= np.asarray(ndimage.minimum(smooth, labels, np.arange(n + 1))) > strong
  h, w = gray.shape
  if remove_border:
    edge = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(),
                           labels[:, :2].ravel(), labels[:, -2:].ravel()])
    drop[np.unique(edge)] = True
  total = sizes[~drop].sum()
  if region is not None and region.any():
    rim = ndimage.maximum_filter(region, size=5) & ~region
    touching = np.unique(labels[rim])
    drop[touching[sizes[touching] < _BOX_TOUCH_FRACTION * total]] = True
  if remove_border:
    band = max(3, int(_EDGE_BAND * min(h, w)))
    near = 2 * band
    small = sizes < _EDGE_SMALL_FRACTION * total
    for i, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
      if drop[i]:
        continue
      inside = (rows.stop <= band or rows.start >= h - band or
                cols.stop <= band or cols.start >= w - band)
      touches = (rows.start < near or rows.stop > h - near or
                 cols.start < near or cols.stop > w - near)
      drop[i] = inside or (touches and small[i])
  return ~drop[labels], norm


def binarize(gray: np.ndarray, method: str = 'otsu', **kwargs) -> np.ndarray:
  """Returns the ink of a scan as a float32 map, ink = 1, paper = 0.

  Args:
    gray: float array [H, W] in [0, 1], ink dark on light paper.
    method: 'otsu' for a hard 0/1 mask (`ink_mask`); 'none' for a soft ink
      darkness map (illumination-normalised and contrast-stretched) restricted
      to the neighbourhood of the cleaned ink mask, so speckle and box lines
      are still gone but stroke shading is kept.
    **kwargs: Passed to `ink_mask`.

  Returns:
    float32 [H, W] in [0, 1].
  """
  if method not in ('otsu', 'none'):
    raise ValueError(f"binarize method must be 'otsu' or 'none', got "
                     f'{method!r}')
  mask, norm = _segment(gray, **kwargs)
  if method == 'otsu' or not mask.any():
    return mask.astype(np.float32)
  ink_level = float(np.median(norm[mask]))
  paper = float(np.median(norm))
  soft = np.clip((paper - norm) / max(paper - ink_level, 1e-3), 0.0, 1.0)
  near = ndimage.binary_dilation(mask, iterations=2)
  return np.where(near, soft, 0.0).astype(np.float32)


# `preprocess_scan` has an argument named `binarize` shadowing the function.
_binarize = binarize


def ink_bbox(mask: np.ndarray) -> Optional[BBox]:
  """Bounding box of True pixels as half-open (top, bottom, left, right)."""
  rows = np.flatnonzero(np.any(mask, axis=1))
  if rows.size == 0:
    return None
  cols = np.flatnonzero(np.any(mask, axis=0))
  return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def crop_to_ink(image: np.ndarray, mask: Optional[np.ndarray] = None,
                margin: float = 0.0) -> np.ndarray:
  """Crops an image to the bounding box of its ink.

  Args:
    image: Array [H, W, ...].
    mask: bool [H, W] ink mask; default `image > 0`.
    margin: Extra border on every side as a fraction of the box's longer
      side, clipped to the image.

  Returns:
    The cropped view of `image`.

  Raises:
    ValueError: If there is no ink.
  """
  if mask is None:
    mask = np.asarray(image) > 0
    if mask.ndim == 3:
      mask = mask.any(axis=-1)
  box = ink_bbox(mask)
  if box is None:
    raise ValueError('No ink found in the image (nothing to crop to)')
  top, bottom, left, right = box
  m = int(round(margin * max(bottom - top, right - left)))
  h, w = mask.shape
  return image[max(0, top - m):min(h, bottom + m),
               max(0, left - m):min(w, right + m)]


def pad_to_square(image: np.ndarray, fill: float = 0.0,
                  margin: float = 0.0) -> np.ndarray:
  """Pads an image symmetrically to a square, plus an optional margin.

  Args:
    image: Array [H, W, ...].
    fill: Value of the padding.
    margin: Fraction of the final side left free on each side, so the content
      spans `1 - 2 * margin` of it along its longer side. Must be in [0, 0.5).

  Returns:
    Square array [S, S, ...].
  """
  if not 0.0 <= margin < 0.5:
    raise ValueError(f'margin must be in [0, 0.5), got {margin}')
  h, w = image.shape[:2]
  side = max(h, w)
  side = int(np.ceil(side / (1.0 - 2.0 * margin))) if margin else side
  top, left = (side - h) // 2, (side - w) // 2
  pad = [(top, side - h - top), (left, side - w - left)]
  pad += [(0, 0)] * (image.ndim - 2)
  return np.pad(image, pad, mode='constant', constant_values=fill)


def resize(image: np.ndarray, res: int) -> np.ndarray:
  """Resizes a float [H, W] image to [res, res].

  Downscaling uses a box (area) filter, so a binary mask becomes an exact
  ink-coverage (anti-aliased) image; upscaling is bilinear.
  """
  image = np.asarray(image, np.float32)
  h, w = image.shape
  method = Image.BOX if res <= min(h, w) else Image.BILINEAR
  out = Image.fromarray(image, mode='F').resize((res, res), method)
  return np.asarray(out, np.float32)


def preprocess_scan(gray: np.ndarray, res: int = 64, invert: bool = True,
                    binarize: bool = True, margin: float = 0.05,
                    **mask_kwargs) -> np.ndarray:
  """Turns a signature scan into a centred, square, fixed-size ink image.

  Args:
    gray: float array [H, W] in [0, 1] (see `image_io.load_grayscale`), ink
      dark.
    res: Output side length.
    invert: If True ink = 1 and background = 0, else ink = 0 on white.
    binarize: If True the output is the anti-aliased hard ink mask, else the
      soft ink darkness (see `binarize(method='none')`).
    margin: Free border on each side as a fraction of the output side.
    **mask_kwargs: Passed to `ink_mask`.

  Returns:
    float32 [res, res] in [0, 1].

  Raises:
    ValueError: If the image contains no ink.
  """
  gray = np.asarray(gray, np.float32)
  ink = _binarize(gray, 'otsu' if binarize else 'none', **mask_kwargs)
  mask = ink > 0
  if not mask.any():
    raise ValueError('No ink found in the image: it looks blank after '
                     'thresholding and clean-up')
  out = resize(pad_to_square(crop_to_ink(ink, mask), 0.0, margin), res)
  out = np.clip(out, 0.0, 1.0)
  return out if invert else (1.0 - out).astype(np.float32)
