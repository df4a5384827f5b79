"""On-the-fly augmentation of single images for data loaders.

`augment` draws random parameters from a `np.random.Generator` (so that
grain's `random_map` can drive it deterministically), composes all geometric
augmentations (random resized crop, zoom, rotation, translation) into one
affine map and resamples once with bilinear interpolation, then optionally
adds Gaussian noise. Each amount set to 0 disables that augmentation; with all
of them 0 the input is returned untouched.

Example:

  cfg = {'scale': 0.1, 'rotation': 10.0, 'translation': 0.05, 'noise': 0.02}
  kwargs = augment_kwargs(cfg)        # validate once, e.g. in the pipeline
  image = augment(image, rng, **kwargs)
"""

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

AUGMENT_KEYS = ('scale', 'rotation', 'translation', 'noise', 'crop', 'fill')

# Aspect ratio range of the random resized crop (as in Inception-style crops,
# but with a narrower default area range chosen by the caller).
_CROP_LOG_RATIO = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))


def affine_inverse(shape: Sequence[int],
                   *,
                   zoom: float = 1.0,
                   angle: float = 0.0,
                   shift: Tuple[float, float] = (0.0, 0.0),
                   crop_box: Optional[Tuple[float, float, float, float]] = None
                   ) -> Tuple[np.ndarray, np.ndarray]:
  """Builds the output-to-input map of a crop + zoom/rotate/shift transform.

  The forward transform first crops `crop_box` from the input and stretches
  it to the full size, then zooms by `zoom` and rotates by `angle` about the
  image centre, then shifts by `shift` pixels.

  Args:
    shape: Image shape; the first two entries are (height, width).
    zoom: Magnification (> 1 enlarges the content).
    angle: Rotation in degrees, counter-clockwise as displayed (positive 90
      matches `np.rot90`).
    shift: (rows, cols) translation in pixels; positive moves content down
      and right.
    crop_box: (top, left, height, width) of the crop in input pixels
      (continuous), or None for the whole image.

  Returns:
    (matrix [2, 2], offset [2]) such that input = matrix @ output + offset,
    in (row, col) pixel coordinates, as `scipy.ndimage.affine_transform` and
    `warp` expect.
  """
  h, w = shape[0], shape[1]
  centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
  theta = math.radians(angle)
  cos, sin = math.cos(theta), math.sin(theta)
  # Inverse rotation, for (row, col) vectors.
  rot_inv = np.array([[cos, sin], [-sin, cos]])
  inner = rot_inv / zoom
  inner_offset = centre - inner @ (centre + np.asarray(shift, np.float64))
  if crop_box is None:
    return inner, inner_offset
  top, left, ch, cw = crop_box
  # Pixel centres sit at integer coordinates, so the stretch maps pixel
  # edges (coordinate + 0.5) of the crop onto those of the output.
  stretch = np.diag([ch / h, cw / w])
  matrix = stretch @ inner
  offset = stretch @ (inner_offset + 0.5) + np.array([top, left]) - 0.5
  return matrix, offset


def warp(image: np.ndarray, matrix: np.ndarray, offset: np.ndarray,
         fill: float = 0.0) -> np.ndarray:
  """Resamples an [H, W] or [H, W, C] image bilinearly under an affine map.

  Args:
    image: float array [H, W] or [H, W, C].
    matrix: [2, 2] output-to-input matrix (see `affine_inverse`).
    offset: [2] output-to-input offset.
    fill: Value for samples more than a pixel outside the image.

  Returns:
    Array of the same shape and dtype.
  """
  if image.ndim == 3:
    out = np.empty_like(image)
    for c in range(image.shape[-1]):
      out[..., c] = warp(image[..., c], matrix, offset, fill)
    return out
  # Pixels are squares, so the image really extends half a pixel beyond the
  # outer pixel centres: a one pixel border replicating the edge keeps zoomed
  # in or cropped views free of dark seams. A second border of `fill` makes
  # the image blend into the fill over one pixel (anti-aliased edges); that
  # plus 2D 'constant' mode is faster than 'grid-constant' or one 3D call.
  padded = np.pad(np.pad(image, 1, mode='edge'), 1, mode='constant',
                  constant_values=fill)
  return ndimage.affine_transform(
      padded, matrix, offset=np.asarray(offset) + 2.0,
      output_shape=image.shape, output=image.dtype, order=1,
      mode='constant', cval=float(fill), prefilter=False)


def sample_transform(rng: np.random.Generator,
                     shape: Sequence[int],
                     *,
                     scale: float = 0.0,
                     rotation: float = 0.0,
                     translation: float = 0.0,
                     crop: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
  """Draws a random geometric transform; see `augment` for the arguments.

  Returns:
    (matrix, offset) as returned by `affine_inverse`.
  """
  h, w = shape[0], shape[1]
  crop_box = None
  if crop:
    area = rng.uniform(crop, 1.0)
    ratio = math.exp(rng.uniform(*_CROP_LOG_RATIO))
    # Clamping (instead of re-drawing) keeps the number of draws fixed.
    cw = min(w, w * math.sqrt(area * ratio))
    ch = min(h, h * math.sqrt(area / ratio))
    crop_box = (rng.uniform(0.0, h - ch), rng.uniform(0.0, w - cw), ch, cw)
  zoom = rng.uniform(1.0 - scale, 1.0 + scale) if scale else 1.0
  angle = rng.uniform(-rotation, rotation) if rotation else 0.0
  shift = (0.0, 0.0)
  if translation:
    dy, dx = rng.uniform(-translation, translation, size=2)
    shift = (dy * h, dx * w)
  return affine_inverse(shape, zoom=zoom, angle=angle, shift=shift,
                        crop_box=crop_box)


def _check_amounts(scale: float, rotation: float, translation: float,
                   noise: float, crop: float, fill: float) -> None:
  """Raises ValueError for out-of-range augmentation amounts."""
  checks = (
      ('scale', scale, 0.0 <= scale < 1.0, '[0, 1)'),
      ('rotation', rotation, 0.0 <= rotation <= 180.0, '[0, 180] degrees'),
      ('translation', translation, 0.0 <= translation <= 1.0, '[0, 1]'),
      ('noise', noise, noise >= 0.0, '>= 0'),
      ('crop', crop, 0.0 <= crop < 1.0,
       '[0, 1) (0 disables, else the minimum area fraction)'),
      ('fill', fill, math.isfinite(fill), 'a finite number'),
  )
  for name, value, ok, valid in checks:
    if not ok:
      raise ValueError(f'Augmentation {name}={value!r} is out of range; '
                       f'valid: {valid}')


def augment(image: np.ndarray,
            rng: np.random.Generator,
            *,
            scale: float = 0.0,
            rotation: float = 0.0,
            translation: float = 0.0,
            noise: float = 0.0,
            crop: float = 0.0,
            fill: float = 0.0) -> np.ndarray:
  """Randomly augments one image.

  Args:
    image: float array [H, W, C] (or [H, W]) with values in [0, 1].
    rng: Source of randomness; equal generator states give equal results.
    scale: Maximum relative zoom: the zoom is uniform in [1-scale, 1+scale].
    rotation: Maximum rotation in degrees (uniform in [-rotation, rotation]).
    translation: Maximum shift as a fraction of the height/width, drawn
      independently per axis.
    noise: Standard deviation of additive Gaussian noise; the result is
      clipped to [0, 1].
    crop: Random resized crop: minimum area fraction of the crop (area
      uniform in [crop, 1], aspect ratio log-uniform in [3/4, 4/3]), which is
      stretched back to the full size.
    fill: Value used where the transform samples outside the image.

  Returns:
    Array of the same shape and dtype; `image` itself when every amount is 0.
  """
  _check_amounts(scale, rotation, translation, noise, crop, fill)
  if not (scale or rotation or translation or noise or crop):
    return image
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f'augment expects a float image, got {image.dtype}')
  out = image
  if scale or rotation or translation or crop:
    matrix, offset = sample_transform(rng, image.shape, scale=scale,
                                      rotation=rotation,
                                      translation=translation, crop=crop)
    out = warp(image, matrix, offset, fill)
  if noise:
    out = out + noise * rng.standard_normal(out.shape, dtype=np.float32)
    out = np.clip(out, 0.0, 1.0, out=out).astype(image.dtype, copy=False)
  return out


def augment_kwargs(cfg: Any) -> Dict[str, float]:
  """Validates an augmentation config and returns `augment` keyword args.

  Args:
    cfg: None, a mapping or an `ml_collections.ConfigDict` with any of the
      keys in `AUGMENT_KEYS`; missing keys mean 0 (disabled).

  Returns:
    Dict with every key of `AUGMENT_KEYS` as a float.

  Raises:
    ValueError: On unknown keys (named, with the valid ones) or out-of-range
      values.
    TypeError: If `cfg` is not mapping-like or a value is not a number.
  """
  if cfg is None:
    items = {}
  elif hasattr(cfg, 'items'):
    items = dict(cfg.items())
  else:
    raise TypeError('Augmentation config must be a mapping or ConfigDict, '
                    f'got {type(cfg).__name__}')
  unknown = sorted(set(items) - set(AUGMENT_KEYS))
  if unknown:
    raise ValueError(f'Unknown augmentation key(s) {unknown}; valid keys: '
                     f'{list(AUGMENT_KEYS)}')
  kwargs = {}
  for key in AUGMENT_KEYS:
    value = items.get(key, 0.0)
    value = 0.0 if value is None else value
    try:
      kwargs[key] = float(value)
    except (TypeError, ValueError) as e:
      raise TypeError(f'Augmentation {key} must be a number, got '
                      f'{value!r}') from e
  _check_amounts(**kwargs)
  return kwargs


def augment_from_config(image: np.ndarray, rng: np.random.Generator,
                        cfg: Any) -> np.ndarray:
  """`augment` with its amounts taken from a mapping or ConfigDict.

  Args:
    image: float array [H, W, C] in [0, 1].
    rng: Source of randomness.
    cfg: See `augment_kwargs`.

  Returns:
    The augmented image (same shape and dtype).
  """
  return augment(image, rng, **augment_kwargs(cfg))
