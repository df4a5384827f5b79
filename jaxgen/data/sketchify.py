"""Pencil-sketch operators that turn face photos into paired sketch data.

Two classic edge-preserving operators are provided, selectable by name:

* ``'xdog'``: the extended difference of Gaussians of Winnemöller et al.
  (2012), "XDoG: An eXtended difference-of-Gaussians compendium including
  advanced image stylization". Flat, bright regions become white paper, dark
  regions (hair, pupils) stay dark and edges get a soft pencil line. This
  is the default because its output is closest to the CUFS artist sketches:
  white background whatever the photo background, dark hair mass, light skin
  with a little shading.
* ``'dodge'``: the "colour dodge" pencil effect,
  ``grey / (1 - blur(1 - grey))``, with a gamma. Crisper, inkier lines and
  flat dark areas (hair) as solid ink, with little mid-tone shading.

The module also converts folders of photos into paired datasets, both on disk
(the command line below) and on the fly (``SketchifiedFolder``)::

  python -m jaxgen.data.sketchify SRC DST [--method xdog] [--size N] \
      [--val_fraction 0.1] [--seed 0]

writes ``DST/{photos,sketches}/NAME.png`` (or ``DST/{train,val}/...`` with a
validation fraction), the layout that ``jaxgen.data.paired.PairedFolder``
reads.
"""

import logging
import os
import sys
from typing import Any, Callable, Sequence

from absl import flags
import numpy as np
from PIL import Image
from scipy import ndimage

from jaxgen.data import paired

METHODS = ('xdog', 'dodge')
IMAGE_EXTENSIONS = paired.IMAGE_EXTENSIONS

# Rec. 601 luma weights: the perceived brightness a pencil artist renders.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)

# Blur widths below are in pixels of a 256-pixel-high image and are scaled
# with the image height, so that a 128 or a 512 pixel face gets the same
# drawing (same line width relative to the face), down to _MIN_SIGMA.
_REFERENCE_HEIGHT = 256.0


def _to_grey(photo: np.ndarray) -> np.ndarray:
  """Returns the luma of an [H, W, 3] or [H, W(, 1)] image as float32 [H, W]."""
  photo = np.asarray(photo, np.float32)
  if photo.ndim == 3 and photo.shape[-1] == 3:
    return photo @ _LUMA
  if photo.ndim == 3 and photo.shape[-1] == 1:
    return photo[..., 0]
  if photo.ndim == 2:
    return photo
  raise ValueError('expected an [H, W, 3] RGB photo (or greyscale), got '
                   f'shape {photo.shape}')


# Blurs narrower than this many pixels do nothing useful: on small images
# (64 px) the scaled widths would fall below it and the lines would vanish.
_MIN_SIGMA = 0.5


def _scaled(sigma: float, height: int) -> float:
  return max(sigma * height / _REFERENCE_HEIGHT, _MIN_SIGMA)


def _normalize_contrast(grey: np.ndarray, low: float, high: float):
  """Stretches the [low, high] percentiles of ``grey`` to [0, 1].

  Photos differ a lot in exposure; without this, a dim photo turns into a
  mostly dark sketch and a bright one into an almost empty page.
  """
  # Percentiles of the central part only: faces are centred, and a white or
  # saturated backdrop must not decide how bright the skin is drawn.
  h, w = grey.shape
  centre = grey[h // 4:h - h // 4, w // 4:w - w // 4]
  lo, hi = np.percentile(centre, [low, high])
  if hi - lo < 1e-3:
    return grey
  return np.clip((grey - lo) / (hi - lo), 0.0, 1.0)


def xdog(grey: np.ndarray, *, sigma: float = 1.0, k: float = 1.6,
         p: float = 20.0, epsilon: float = 0.5, phi: float = 2.0,
         tone_sigma: float = 1.2, floor: float = 0.1,
         stretch: bool = True) -> np.ndarray:
  """Extended difference of Gaussians on a greyscale image.

  Computes ``S = (1 + p) * G_sigma - p * G_{k sigma}`` (an unsharp-masked
  image whose edges overshoot) and applies the soft threshold
  ``T(u) = 1 if u >= epsilon else 1 + tanh(phi * (u - epsilon))``.

  Args:
    grey: float [H, W] image in [0, 1].
    sigma: inner Gaussian width in pixels at 256 pixels of image height
      (scaled with the actual height); sets the pencil line width.
    k: ratio of the outer to the inner Gaussian width.
    p: edge sharpening strength; higher gives darker, bolder lines.
    epsilon: brightness above which the page stays white. Lower it for
      lighter drawings with less tone.
    phi: steepness of the soft threshold; low values give soft grey shading,
      high values a hard black-and-white ink look.
    tone_sigma: pre-blur (same units as sigma) that removes photo noise and
      skin texture, which would otherwise become speckles.
    floor: darkest output value; pencil on paper is never pure black, and
      a floor keeps dark hair a textured grey instead of a solid blot.
    stretch: whether to normalise the photo contrast first.

  Returns:
    float32 [H, W] sketch in [0, 1], 1 being white paper.
  """
  height = grey.shape[0]
  if stretch:
    grey = _normalize_contrast(grey, 1.0, 99.0)
  if tone_sigma > 0:
    grey = ndimage.gaussian_filter(grey, _scaled(tone_sigma, height))
  s1 = _scaled(sigma, height)
  g1 = ndimage.gaussian_filter(grey, s1)
  g2 = ndimage.gaussian_filter(grey, s1 * k)
  u = (1.0 + p) * g1 - p * g2
  out = np.where(u >= epsilon, 1.0, 1.0 + np.tanh(phi * (u - epsilon)))
  out = floor + (1.0 - floor) * np.clip(out, 0.0, 1.0)
  return out.astype(np.float32)


def dodge(grey: np.ndarray, *, sigma: float = 8.0, gamma: float = 2.5,
          tone_sigma: float = 0.6, stretch: bool = True) -> np.ndarray:
  """Colour-dodge pencil sketch: ``grey / (1 - blur(1 - grey))``.

  Args:
    grey: float [H, W] image in [0, 1].
    sigma: blur width in pixels at 256 pixels of image height (scaled with
      the actual height); wider blur gives wider, softer strokes.
    gamma: exponent applied to the result; the raw dodge is very faint and
      a gamma above 1 darkens the strokes without greying the paper.
    tone_sigma: pre-blur (same units as sigma) against photo noise, which
      the dodge division amplifies into speckles.
    stretch: whether to normalise the photo contrast first.

  Returns:
    float32 [H, W] sketch in [0, 1], 1 being white paper.
  """
  if stretch:
    grey = _normalize_contrast(grey, 1.0, 99.0)
  if tone_sigma > 0:
    grey = ndimage.gaussian_filter(grey, _scaled(tone_sigma, grey.shape[0]))
  blurred_inverse = ndimage.gaussian_filter(
      1.0 - grey, _scaled(sigma, grey.shape[0]))
  out = grey / np.maximum(1.0 - blurred_inverse, 1e-4)
  out = np.clip(out, 0.0, 1.0) ** gamma
  return out.astype(np.float32)


_OPERATORS: dict[str, Callable[..., np.ndarray]] = {
    'xdog': xdog, 'dodge': dodge}


def sketchify(photo: np.ndarray, method: str = 'xdog',
              **params: Any) -> np.ndarray:
  """Turns an RGB face photo into a greyscale pencil sketch.

  Args:
    photo: float32 [H, W, 3] RGB photo in [0, 1] (greyscale [H, W] or
      [H, W, 1] is accepted too).
    method: 'xdog' (default; closest to artist sketches) or 'dodge'.
    **params: keyword parameters of the chosen operator (see ``xdog`` and
      ``dodge``).

  Returns:
    float32 [H, W] sketch in [0, 1] (1 = white paper).

  Raises:
    ValueError: for an unknown method or a badly shaped photo.
  """
  _check_method(method)
  return _OPERATORS[method](_to_grey(photo), **params)


def _check_method(method: str) -> None:
  if method not in _OPERATORS:
    raise ValueError(f'unknown sketch method {method!r}; choose one of '
                     f'{", ".join(METHODS)}')


def list_images(root: str, exclude: Sequence[str] = ()) -> list[str]:
  """Returns the sorted image files (png/jpg/...) under ``root``, recursively.

  The one listing of image folders in jaxgen: training data, evaluation
  folders and the sample/translate CLIs' inputs all see the same files in
  the same order.

  Args:
    root: folder to scan; hidden files and folders are ignored.
    exclude: folders inside ``root`` to skip (e.g. a CLI's output folder, so
      that a second run does not read the first one's results).

  Returns:
    Sorted list of file paths.
  """
  exclude = {os.path.abspath(e) for e in exclude}
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(
        d for d in dirnames if not d.startswith('.')
        and os.path.abspath(os.path.join(dirpath, d)) not in exclude)
    for name in filenames:
      if (not name.startswith('.')
          and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS):
        found.append(os.path.join(dirpath, name))
  return sorted(found)


def _find_photos(root: str, what: str) -> list[str]:
  """list_images(root), with clear errors for a missing or empty folder."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f'{what} {root!r} does not exist')
  paths = list_images(root)
  if not paths:
    raise FileNotFoundError(f'{what} {root!r} holds no images '
                            f'({", ".join(IMAGE_EXTENSIONS)})')
  return paths


def _pair_name(path: str, root: str) -> str:
  """Name of a pair: the relative path without extension, '/' -> '_'.

  Flat folders keep their file stems; nested folders cannot collide.
  """
  rel = os.path.splitext(os.path.relpath(path, root))[0]
  return rel.replace(os.sep, '_')


def load_photo(path: str, size: int | None = None) -> np.ndarray:
  """Loads an image as float32 [H, W, 3] RGB in [0, 1].

  Args:
    path: image file.
    size: if given, the centre square of the image is resized to
      ``size x size`` (faces are centred, so the square crop loses only
      background and a little hair or chin).

  Returns:
    float32 [H, W, 3] array in [0, 1].
  """
  with Image.open(path) as im:
    im = im.convert('RGB')
    if size is not None:
      w, h = im.size
      side = min(w, h)
      left, top = (w - side) // 2, (h - side) // 2
      im = im.resize((size, size), Image.Resampling.BICUBIC,
                     box=(left, top, left + side, top + side))
    return np.asarray(im, np.float32) / 255.0


class SketchifiedFolder:
  """Random-access source of (sketch, photo) pairs made from a photo folder.

  Follows grain's RandomAccessDataSource protocol (``__len__`` and
  ``__getitem__``); the sketch is computed on every access, so nothing is
  written to disk.

  Elements are ``{'sketch': float32 [size, size, 1], 'photo': float32
  [size, size, 3]}`` in [0, 1].
  """

  def __init__(self, root: str, size: int = 128, method: str = 'xdog',
               **params: Any):
    """Scans ``root`` (recursively) for images.

    Args:
      root: folder of face photos.
      size: side of the square output (centre crop then resize).
      method: sketch operator name, see ``sketchify``.
      **params: operator parameters.

    Raises:
      FileNotFoundError: if ``root`` is missing or holds no images.
      ValueError: for an unknown method.
    """
    _check_method(method)
    self._paths = _find_photos(root, 'photo folder')
    self._size = size
    self._method = method
    self._params = params

  def __len__(self) -> int:
    return len(self._paths)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    photo = load_photo(self._paths[index], self._size)
    sketch = sketchify(photo, self._method, **self._params)
    return {'sketch': sketch[..., None], 'photo': photo}

  def __repr__(self) -> str:
    return (f'SketchifiedFolder(n={len(self)}, size={self._size}, '
            f'method={self._method!r})')


def _save(array: np.ndarray, path: str) -> None:
  Image.fromarray(np.round(np.clip(array, 0, 1) * 255).astype(np.uint8)).save(
      path)


def convert_folder(src: str, dst: str, *, method: str = 'xdog',
                   size: int | None = None, val_fraction: float = 0.0,
                   seed: int = 0, **params: Any) -> tuple[int, int]:
  """Writes a paired sketch/photo dataset made from a folder of photos.

  Args:
    src: folder of photos (searched recursively; png, jpg, ...).
    dst: output root; gets ``{photos,sketches}/NAME.png``, or
      ``{train,val}/{photos,sketches}/NAME.png`` when ``val_fraction > 0``.
    method: sketch operator name.
    size: optional square output side (centre crop then resize); the
      native size is kept otherwise.
    val_fraction: fraction of pairs written to the validation split.
    seed: seed of the train/val assignment.
    **params: operator parameters.

  Returns:
    (number of pairs written, number of unreadable files skipped).

  Raises:
    FileNotFoundError: if ``src`` is missing or holds no images.
    RuntimeError: if no file could be read.
  """
  _check_method(method)
  paths = _find_photos(src, 'source folder')
  names = [_pair_name(p, src) for p in paths]
  if val_fraction > 0:
    # Split over all names, readable or not, so that a file's split does not
    # depend on whether some other file is broken.
    _, val_names = paired.split_names(names, val_fraction, seed)
    val_names = set(val_names)
    split_of = {n: ('val' if n in val_names else 'train') for n in names}
    for split in ('train', 'val'):
      for kind in ('photos', 'sketches'):
        os.makedirs(os.path.join(dst, split, kind), exist_ok=True)
  else:
    split_of = {n: '' for n in names}
    for kind in ('photos', 'sketches'):
      os.makedirs(os.path.join(dst, kind), exist_ok=True)

  written = skipped = 0
  for path, name in zip(paths, names):
    try:
      photo = load_photo(path, size)
    except Exception as e:  # pylint: disable=broad-except
      # PIL raises many different errors for truncated or non-image files;
      # one bad file must not stop a conversion of thousands.
      logging.warning('skipping unreadable image %s: %s', path, e)
      skipped += 1
      continue
    sketch = sketchify(photo, method, **params)
    out = os.path.join(dst, split_of[name])
    _save(photo, os.path.join(out, 'photos', name + '.png'))
    _save(sketch, os.path.join(out, 'sketches', name + '.png'))
    written += 1
  if skipped:
    logging.warning('skipped %d unreadable file(s) of %d', skipped, len(paths))
  if not written:
    raise RuntimeError(f'none of the {len(paths)} files in {src!r} could be '
                       'read as an image')
  return written, skipped


def _cli():
  """jaxgen.cli, imported here rather than at the top.

  jaxgen.cli loads the models and tasks, which import this module; at the
  top it would make this light data module heavy and the import circular.
  """
  from jaxgen import cli  # pylint: disable=g-import-not-at-top
  return cli


def _define(fv: flags.FlagValues, argv: list[str]) -> None:
  del argv
  flags.DEFINE_enum('method', 'xdog', list(METHODS), 'Sketch operator.',
                    flag_values=fv)
  flags.DEFINE_integer('size', None, 'Square output side (centre crop + '
                       'resize; default: the photos\' own size).',
                       lower_bound=8, flag_values=fv)
  flags.DEFINE_float('val_fraction', 0.0, 'If > 0, write DST/{train,val}/... '
                     'splits.', flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'Seed of the train/val assignment.',
                       flag_values=fv)
  flags.register_validator('val_fraction', lambda v: 0.0 <= v < 1.0,
                           '--val_fraction must be in [0, 1)',
                           flag_values=fv)


def _convert(fv: flags.FlagValues, src: str, dst: str) -> None:
  try:
    written, skipped = convert_folder(
        src, dst, method=fv.method, size=fv.size,
        val_fraction=fv.val_fraction, seed=fv.seed)
  except RuntimeError as e:  # No file could be read: the user's data.
    raise _cli().UserError(str(e)) from e
  print(f'wrote {written} pairs to {dst} ({skipped} unreadable '
        'file(s) skipped)')


def main(argv: list[str] | None = None) -> int:
  """Command line of convert_folder: SRC DST [flags] (module docstring).

  Args:
    argv: arguments without the program name (default: sys.argv[1:]).

  Returns:
    The process exit status.
  """
  return _cli().run(_convert, _define, argv, __doc__,
                    positional=('src', 'dst'))


if __name__ == '__main__':
  sys.exit(main())
