"""Image files in and out of the sample and translate tools.

Inputs are a file or a folder (searched recursively, sorted); each output
mirrors its input's path relative to the input folder, as PNG. An output
that would replace an input, or two inputs that would share an output, is
an error before anything is written.
"""

import os
import sys
import time
from typing import List, NamedTuple, Sequence

import numpy as np
from PIL import Image

from jaxgen.data import paired
from jaxgen.data import sketchify

IMAGE_EXTENSIONS = paired.IMAGE_EXTENSIONS


class Input(NamedTuple):
  """An input image file and the name its outputs take.

  Attributes:
    path: the file.
    name: its path relative to the input folder, without extension.
  """
  path: str
  name: str


def list_images(path: str, exclude: Sequence[str] = ()) -> List[Input]:
  """The image files at `path`: the file itself, or a folder's (recursive;
  hidden files and folders skipped).

  Args:
    path: an image file or a folder.
    exclude: folders to skip inside `path` (the outputs', so that a second
      run does not read the first one's results).

  Returns:
    Inputs sorted by path.

  Raises:
    FileNotFoundError: nothing at `path`, or a folder without images.
  """
  path = os.path.abspath(path)
  if os.path.isfile(path):
    return [Input(path, os.path.splitext(os.path.basename(path))[0])]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No file or folder at {path}.")
  found = [Input(full, os.path.splitext(os.path.relpath(full, path))[0])
           for full in sketchify.list_images(path, exclude)]
  if not found:
    raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) "
                            f"under {path}.")
  return found


def output_paths(inputs: Sequence[Input], out_dir: str) -> List[str]:
  """OUT_DIR/<name>.png for each input, checked before anything is written.

  Args:
    inputs: from `list_images`.
    out_dir: the output folder.

  Returns:
    One path per input.

  Raises:
    ValueError: an output would overwrite an input, or two inputs (same
      name, different extensions) would write the same output.
  """
  out_dir = os.path.abspath(out_dir)
  outputs = [os.path.join(out_dir, i.name + ".png") for i in inputs]
  sources = {os.path.realpath(i.path): i.path for i in inputs}
  seen = {}
  for inp, out in zip(inputs, outputs):
    real = os.path.realpath(out)
    if real in sources:
      raise ValueError(f"Writing {out} would overwrite the input "
                       f"{sources[real]}; choose another output folder.")
    if real in seen:
      raise ValueError(f"{seen[real]} and {inp.path} would both be written "
                       f"to {out}; rename one of them.")
    seen[real] = inp.path
  return outputs


def to_uint8(images) -> np.ndarray:
  """[..., h, w, c] floats in [0, 1] -> uint8 (rounded, clipped)."""
  return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) *
                  255.0).astype(np.uint8)


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bicubic resize (PIL, as the data loaders) of a uint8 [h, w, c] image."""
  if image.shape[:2] == (height, width):
    return image
  pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.Resampling.BICUBIC))
  return out.reshape(height, width, image.shape[-1])


def write_png(path: str, image: np.ndarray) -> str:
  """Writes a uint8 [h, w, 1|3] image as PNG (folders made); returns path."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
  return path


class Progress:
  """'what: done/total (rate)' on stderr: one updated line on a terminal,
  else a line every `every` seconds and at the end."""

  def __init__(self, total: int, what: str, every: float = 10.0):
    self.total, self.what, self.every = total, what, every
    self.done = 0
    self.start = self.last = time.time()
    self.tty = sys.stderr.isatty()

  def update(self, num: int):
    """Counts `num` more items and shows the line when due."""
    self.done += num
    now = time.time()
    final = self.done >= self.total
    if not (self.tty or final or now - self.last >= self.every):
      return
    self.last = now
    rate = self.done / max(now - self.start, 1e-9)
    line = f"{self.what}: {self.done}/{self.total} ({rate:.1f}/s)"
    if self.tty:
      print("\r" + line, end="\n" if final else "", file=sys.stderr,
            flush=True)
    else:
      print(line, file=sys.stderr, flush=True)
