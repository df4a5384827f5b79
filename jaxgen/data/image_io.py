"""Reading image files of any mode into float arrays, loudly on bad files.

PIL alone clips 16-bit greyscale when converting, drops transparency onto
black and pads truncated JPEGs silently when a library has switched
`ImageFile.LOAD_TRUNCATED_IMAGES` on; `load_image` scales by the full range,
composites on white (paper) and raises one `ImageReadError` sentence for an
empty, truncated or corrupt file. Shared by the signature scans, the
sample/translate CLIs and the data folders.
"""

import os

import numpy as np
from PIL import Image
from PIL import ImageFile


class ImageReadError(ValueError):
  """An image file could not be read (missing data, truncated, not an image)."""


def load_grayscale(path: str) -> np.ndarray:
  """Loads an image file as greyscale.

  Colour images are converted with ITU-R 601 luma weights, 16-bit images are
  scaled by their full range and transparent pixels are composited on white
  (the colour of paper).

  Args:
    path: Path of any image file PIL can decode.

  Returns:
    float32 array [H, W] with values in [0, 1].

  Raises:
    FileNotFoundError: If `path` does not exist.
    ImageReadError: If the file is empty, not an image, truncated or corrupt.
  """
  return load_image(path, channels=1)[..., 0]


def load_image(path: str, channels: int = 3) -> np.ndarray:
  """Loads an image file with 1 (luma) or 3 (RGB) channels.

  Any mode is converted as `load_grayscale` does: 16-bit images scaled by
  their full range, transparent pixels composited on white, greyscale
  repeated to RGB.

  Args:
    path: Path of any image file PIL can decode.
    channels: 1 or 3.

  Returns:
    float32 array [H, W, channels] with values in [0, 1].

  Raises:
    FileNotFoundError: If `path` does not exist.
    ImageReadError: If the file is empty, not an image, truncated or corrupt.
  """
  if channels not in (1, 3):
    raise ValueError(f'channels must be 1 or 3, got {channels}')
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f'Image file not found: {path}')
  if os.path.getsize(path) == 0:
    raise ImageReadError(f'Cannot read image {path}: the file is empty')
  try:
    # verify() walks the whole PNG chunk stream (catching truncation and bad
    # CRCs) but leaves the image unusable, so the file is opened twice.
    with Image.open(path) as im:
      im.verify()
    with Image.open(path) as im:
      im.load()
      fmt = im.format
      out = (_to_gray_array(im)[..., None] if channels == 1 else
             _to_rgb_array(im))
  except (OSError, SyntaxError, ValueError, EOFError, TypeError,
          Image.DecompressionBombError) as e:
    reason = str(e) or type(e).__name__
    if 'truncat' in reason.lower():
      # PIL words this differently per format and stage; say it plainly.
      reason = f'the file is truncated ({reason})'
    raise ImageReadError(f'Cannot read image {path}: {reason}') from e
  if ImageFile.LOAD_TRUNCATED_IMAGES and fmt == 'JPEG':
    # Some other code switched PIL to silently pad truncated files; a JPEG
    # must still end with its end-of-image marker.
    with open(path, 'rb') as f:
      f.seek(max(0, os.path.getsize(path) - 4096))
      if b'\xff\xd9' not in f.read():
        raise ImageReadError(f'Cannot read image {path}: image file is '
                             'truncated (no JPEG end marker)')
  return out


def _is_grey(im: Image.Image) -> bool:
  return im.mode.startswith('I') or im.mode in ('F', '1', 'L')


def _to_gray_array(im: Image.Image) -> np.ndarray:
  """Converts a loaded PIL image to float32 greyscale in [0, 1]."""
  mode = im.mode
  if mode.startswith('I'):
    # PIL's convert('L') clips 16-bit values instead of scaling them.
    return np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)
  if mode == 'F':
    return np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
  if mode in ('1', 'L'):
    return np.asarray(im.convert('L'), dtype=np.float32) / 255.0
  gray = _rgb_on_white(im) @ np.array([0.299, 0.587, 0.114], np.float32)
  return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
  """Converts a loaded PIL image to float32 RGB [H, W, 3] in [0, 1]."""
  if _is_grey(im):
    return np.repeat(_to_gray_array(im)[..., None], 3, axis=-1)
  return _rgb_on_white(im)


def _rgb_on_white(im: Image.Image) -> np.ndarray:
  """RGB of a colour (or grey-with-alpha) image, transparency on white."""
  if im.mode.endswith(('A', 'a')) or 'transparency' in im.info:
    rgba = np.asarray(im.convert('RGBA'), dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    return rgba[..., :3] * alpha + (1.0 - alpha)
  return np.asarray(im.convert('RGB'), dtype=np.float32) / 255.0
