"""Uploads to model inputs and model outputs to PNGs, with limits.

Everything here is Pillow and numpy on the host: an upload is checked for
size in bytes and in pixels before it is decoded, flattened to RGB (EXIF
orientation applied, transparency over white, 16-bit and float greys
scaled), squashed to the model's square resolution, and the model's output
is resized back to the upload's aspect ratio.
"""

import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image
from PIL import ImageOps

# The formats a browser can upload, take or draw; others (TIFF, PSD, EPS...)
# are refused before their decoders run.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000   # A 48 MP phone photo is refused; 12 MP is fine.
MAX_OUTPUT_SIDE = 1024    # Upscaling a 256 px output further adds only bytes.


class ImageError(ValueError):
  """An upload the demo refuses, with a message for the page.

  Attributes:
    status: the HTTP status that fits (400 unreadable, 413 too large).
  """

  def __init__(self, message: str, status: int = 400):
    super().__init__(message)
    self.status = status


def set_pillow_limit(max_pixels: int = MAX_PIXELS):
  """Sets Pillow's process-wide decompression-bomb limit to `max_pixels`.

  Pillow warns above `Image.MAX_IMAGE_PIXELS` and refuses to open images
  above twice that; `decode` refuses anything above `max_pixels` itself
  before decoding, so the warning band never reaches a decoder.

  Args:
    max_pixels: the largest width * height accepted.
  """
  Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _mb(num_bytes: int) -> str:
  return f"{num_bytes / 2 ** 20:.1f} MB"


def check_size(num_bytes: int, max_bytes: int = MAX_BYTES):
  """Raises ImageError (413) for an upload over `max_bytes`."""
  if num_bytes > max_bytes:
    raise ImageError(f"The file is too large ({_mb(num_bytes)}); the limit "
                     f"is {_mb(max_bytes)}.", 413)


def decode(data: bytes, max_bytes: int = MAX_BYTES,
           max_pixels: int = MAX_PIXELS) -> Image.Image:
  """Decodes an upload to an RGB image, refusing what is not a fit.

  Args:
    data: the uploaded file's bytes.
    max_bytes: the largest upload accepted.
    max_pixels: the largest width * height accepted (checked from the
      header, before any pixel is decoded).

  Returns:
    An RGB PIL image, upright (EXIF orientation applied).

  Raises:
    ImageError: empty, too large, not an image, or corrupt.
  """
  if not data:
    raise ImageError("The upload is empty: choose an image file.")
  check_size(len(data), max_bytes)
  try:
    image = Image.open(io.BytesIO(data), formats=FORMATS)
  except Image.DecompressionBombError as e:
    raise ImageError(_too_many_pixels(None, max_pixels), 413) from e
  except (OSError, SyntaxError, ValueError) as e:
    raise ImageError(
        "This file is not an image the demo can read (PNG, JPEG, WebP, GIF "
        "or BMP expected).") from e
  width, height = image.size
  if width * height > max_pixels:
    raise ImageError(_too_many_pixels((width, height), max_pixels), 413)
  try:
    image.load()
    return flatten(ImageOps.exif_transpose(image))
  except Image.DecompressionBombError as e:
    raise ImageError(_too_many_pixels(None, max_pixels), 413) from e
  except (OSError, SyntaxError, ValueError, EOFError) as e:
    raise ImageError(f"The image is damaged or truncated and cannot be "
                     f"decoded ({image.format}).") from e


def _too_many_pixels(size: Optional[Tuple[int, int]], max_pixels: int) -> str:
  got = f" ({size[0]} x {size[1]} px)" if size else ""
  return (f"The image has too many pixels{got}; the limit is "
          f"{max_pixels / 1e6:.0f} megapixels.")


def flatten(image: Image.Image) -> Image.Image:
  """Any Pillow mode -> RGB: alpha over white, high-bit greys scaled.

  Sketches drawn or saved with a transparent background must come out as
  dark lines on white, which is what the models were trained on.

  Args:
    image: a decoded PIL image.

  Returns:
    An RGB PIL image of the same size.
  """
  if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
    a = np.asarray(image, np.float32)
    scale = 257.0 if a.max() > 255 else 1.0  # 16-bit vs 8-bit range in I.
    image = Image.fromarray(np.uint8(np.clip(a / scale, 0, 255)))
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, rgba)
  return image.convert("RGB")


def output_size(size: Tuple[int, int],
                max_side: int = MAX_OUTPUT_SIDE) -> Tuple[int, int]:
  """The (width, height) a result is returned at: the input's, capped."""
  width, height = size
  scale = min(1.0, max_side / max(width, height))
  return max(1, round(width * scale)), max(1, round(height * scale))


def to_model_input(image: Image.Image, res: int, channels: int) -> np.ndarray:
  """An RGB image -> [1, res, res, channels] float32 in [-1, 1].

  The image is squashed to the model's square (not cropped), so that the
  result, stretched back to the input's aspect ratio, lines up with it.

  Args:
    image: an RGB PIL image of any size.
    res: the model's resolution.
    channels: 1 (ITU-R 601 luma, as jaxgen's to_channels) or 3.

  Returns:
    The batch of one.
  """
  image = image.convert("L" if channels == 1 else "RGB")
  if image.size != (res, res):
    image = image.resize((res, res), Image.Resampling.BICUBIC,
                         reducing_gap=3.0)
  x = np.asarray(image, np.float32) / 127.5 - 1.0
  return x.reshape(1, res, res, channels)


def to_uint8(images: np.ndarray, signed: bool) -> np.ndarray:
  """Floats in [-1, 1] (`signed`) or [0, 1] -> uint8, clipped."""
  x = np.asarray(images, np.float32)
  x = (x + 1.0) * 127.5 if signed else x * 255.0
  return np.round(np.clip(x, 0, 255)).astype(np.uint8)


def to_png(pixels: np.ndarray, size: Optional[Tuple[int, int]] = None,
           resample=Image.Resampling.BICUBIC) -> bytes:
  """uint8 [h, w, 1|3] -> PNG bytes, resized to `size` (w, h) if given."""
  image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
  if size is not None and image.size != tuple(size):
    image = image.resize(tuple(size), resample)
  out = io.BytesIO()
  image.save(out, format="PNG")
  return out.getvalue()
