"""Image folders as Inception statistics (`python -m jaxgen.evaluate --real
--fake`): recursive listing, and streaming the images through Inception.

Folders may mix sizes and modes: greyscale is repeated to 3 channels, alpha
dropped; see `image_statistics` for how mixed sizes are resized. Images are
found as the data pipeline finds them (`sketchify.list_images`: the image
extensions of jaxgen/data/paired.py, hidden files and folders skipped, so a
macOS "._x.png" resource fork is not read as an image).
"""

import os
from typing import List, Sequence

from absl import logging
import numpy as np
from PIL import Image

from jaxgen.data import sketchify
from jaxgen.evaluation import features
from jaxgen.evaluation import inception
from jaxgen.evaluation import resize as resize_lib
from jaxgen.evaluation import statistics


class FolderError(ValueError):
  """A folder that cannot be scored (too few images), said in one line."""


def list_images(folder: str) -> List[str]:
  """Sorted image paths under `folder` (recursive; see the module doc).

  Args:
    folder: a folder of images.

  Returns:
    The paths, at least two.

  Raises:
    FileNotFoundError: no folder at `folder`.
    FolderError: fewer than two images in it.
  """
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"No folder at {folder}.")
  paths = sketchify.list_images(folder)
  if len(paths) < 2:
    raise FolderError(
        f"{'No images' if not paths else 'Only one image'} "
        f"({', '.join(sketchify.IMAGE_EXTENSIONS)}) under {folder}; FID "
        "needs at least 2 (and thousands for a meaningful value).")
  return paths


def read_rgb(path: str) -> np.ndarray:
  """An image file as uint8 RGB [h, w, 3]."""
  with Image.open(path) as img:
    # convert("RGB") repeats greyscale to 3 channels and drops alpha.
    return np.asarray(img.convert("RGB"), np.uint8)


def folder_statistics(folder: str, extractor, batch_size: int = 64
                      ) -> statistics.InceptionStatistics:
  """`image_statistics` of the images `list_images(folder)` finds.

  Args:
    folder: image folder.
    extractor: the feature extractor.
    batch_size: images read at a time.

  Returns:
    Statistics with features (and logits when the weights have them).
  """
  return image_statistics(list_images(folder), extractor, batch_size,
                          name=folder)


def image_statistics(paths: Sequence[str], extractor, batch_size: int = 64,
                     name: str = "images") -> statistics.InceptionStatistics:
  """Streams image files through Inception (see the module docstring).

  Images of one size go to the extractor as uint8 batches (resized in the
  jitted network). Mixed sizes cannot share a batch, so each image is first
  resized to 299 px on its own with the same resize mode and sent as float,
  unquantised: the same numbers, one compilation.

  Args:
    paths: image files (e.g. from `list_images`).
    extractor: the feature extractor.
    batch_size: images read at a time.
    name: what the log lines call these images.

  Returns:
    Statistics with features (and logits when the weights have them).
  """
  sizes = set()
  for p in paths:
    with Image.open(p) as img:  # Reads the header only.
      sizes.add(img.size)
  uniform = len(sizes) == 1
  if not uniform:
    logging.info("%s: %d image sizes; resizing each to %d px first.",
                 name, len(sizes), inception.INPUT_SIZE)

  def batches():
    size = (inception.INPUT_SIZE, inception.INPUT_SIZE)
    for i in range(0, len(paths), batch_size):
      images = [read_rgb(p) for p in paths[i:i + batch_size]]
      yield np.stack(images) if uniform else np.concatenate([
          np.asarray(resize_lib.resize_images(
              x[None].astype(np.float32), size, extractor.resize_mode))
          for x in images])

  return features.compute_statistics(
      batches(), extractor, value_range=None if uniform else (0.0, 255.0),
      quantize=uniform, keep_features=True, name=name)
