"""A random-access source of preprocessed handwritten signatures.

Expects one folder per signer:

  root/
    alice/ 1.png 2.jpg ...
    bob/   scan.tif ...

Signers (not images) are split into train/test deterministically from a seed,
so no writer appears in both splits. Images are few and small, so the whole
split is preprocessed once at construction (see `preprocess.preprocess_scan`)
and kept in memory as one float32 array; `__getitem__` is a cheap lookup,
which suits grain's `RandomAccessDataSource` protocol.
"""

import logging
import os
from typing import Dict, List, Sequence, Tuple

import numpy as np

from jaxgen.data import image_io
from jaxgen.data import preprocess

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')
SPLITS = ('train', 'test', 'all')
ON_BAD_FILE = ('error', 'skip')
MIN_RES = 8

_log = logging.getLogger(__name__)


def split_signers(signers: Sequence[str], test_fraction: float,
                  seed: int) -> Tuple[List[str], List[str]]:
  """Deterministically splits signer names into (train, test).

  The test split gets round(test_fraction * n) signers, but at least one when
  `test_fraction > 0` and there are at least two signers, and never all of
  them when `test_fraction < 1`.

  Args:
    signers: Signer names (order does not matter).
    test_fraction: Fraction of signers for the test split, in [0, 1].
    seed: Seed of the shuffle.

  Returns:
    (train, test) lists of names, each sorted.
  """
  names = sorted(signers)
  n = len(names)
  n_test = int(round(test_fraction * n))
  if test_fraction > 0 and n >= 2:
    n_test = max(1, n_test)
  if test_fraction < 1:
    n_test = min(n_test, n - 1)
  n_test = max(0, n_test)
  order = np.random.default_rng(seed).permutation(n)
  test = sorted(names[i] for i in order[:n_test])
  train = sorted(names[i] for i in order[n_test:])
  return train, test


def _is_image(name: str) -> bool:
  return (not name.startswith('.') and
          os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS)


class SignatureFolder:
  """Preprocessed signature images of a folder tree, split by signer.

  Attributes:
    root: The dataset folder.
    split: 'train', 'test' or 'all'.
    signers: Sorted names of all signers with images (both splits); the
      'writer' of an element indexes this list, so ids agree across splits.
    split_signers: Sorted names of the signers in this split.
    paths: Image paths of this split, in element order (skipped files
      excluded).
    writers: np.int32 [N] writer index of each element.
    images: float32 [N, res, res, 1] preprocessed images.
    num_skipped: Number of bad files skipped (on_bad_file='skip').
    skipped: (path, reason) of each skipped file.
  """

  def __init__(self,
               root: str,
               split: str = 'train',
               res: int = 64,
               invert: bool = True,
               binarize: bool = True,
               test_fraction: float = 0.2,
               seed: int = 0,
               on_bad_file: str = 'error'):
    """Scans `root` and preprocesses the images of `split`.

    Args:
      root: Folder with one sub-folder of images per signer.
      split: 'train', 'test' or 'all'.
      res: Side of the square output images (>= 8).
      invert: If True ink = 1 on a 0 background, else ink = 0 on white.
      binarize: Hard (anti-aliased) ink masks if True, else soft ink shading.
      test_fraction: Fraction of signers held out for 'test', in [0, 1].
      seed: Seed of the signer split.
      on_bad_file: 'error' raises on the first unreadable, truncated or blank
        (no ink) file; 'skip' logs a warning per such file and leaves it out.

    Raises:
      FileNotFoundError: If `root` does not exist.
      ValueError: For invalid arguments, a root that is not a directory or
        has no signer folders or images, an empty split, or a bad file
        (with on_bad_file='error').
    """
    if split not in SPLITS:
      raise ValueError(f'Invalid split {split!r}; valid splits: {SPLITS}')
    if on_bad_file not in ON_BAD_FILE:
      raise ValueError(f'Invalid on_bad_file {on_bad_file!r}; valid values: '
                       f'{ON_BAD_FILE}')
    if not isinstance(res, (int, np.integer)) or res < MIN_RES:
      raise ValueError(f'Invalid res {res!r}; valid values: integers >= '
                       f'{MIN_RES}')
    if not 0.0 <= test_fraction <= 1.0:
      raise ValueError(f'Invalid test_fraction {test_fraction!r}; valid '
                       'values: a fraction in [0, 1]')
    self.root = os.fspath(root)
    self.split = split
    self.res = int(res)
    self.invert = invert
    self.binarize = binarize

    files = self._scan(self.root)
    self.signers = sorted(files)
    train, test = split_signers(self.signers, test_fraction, seed)
    chosen = {'train': train, 'test': test, 'all': self.signers}[split]
    self.split_signers = chosen
    candidates = [(p, self.signers.index(s)) for s in chosen for p in files[s]]
    if not candidates:
      raise ValueError(
          f'Split {split!r} of {self.root} has no images: {len(self.signers)} '
          f'signer(s) in total, {len(train)} for train and {len(test)} for '
          f'test with test_fraction={test_fraction}. Use split="all" or '
          'adjust test_fraction (test needs it > 0 and at least 2 signers).')

    self.skipped: List[Tuple[str, str]] = []
    images, writers, paths = [], [], []
    for path, writer in candidates:
      try:
        image = self._load(path)
      except ValueError as e:  # Includes image_io.ImageReadError.
        if on_bad_file == 'error':
          raise
        _log.warning('Skipping bad signature image: %s', e)
        self.skipped.append((path, str(e)))
        continue
      images.append(image)
      writers.append(writer)
      paths.append(path)
    if self.skipped:
      _log.warning('Skipped %d of %d image(s) of split %r in %s',
                      len(self.skipped), len(candidates), split, self.root)
    if not images:
      raise ValueError(f'All {len(candidates)} image(s) of split {split!r} '
                       f'in {self.root} were bad files and skipped')
    self.paths = paths
    self.images = np.stack(images)[..., None].astype(np.float32)
    self.writers = np.asarray(writers, np.int32)

  @staticmethod
  def _scan(root: str) -> Dict[str, List[str]]:
    """Returns {signer: sorted image paths} for signers with images."""
    if not os.path.exists(root):
      raise FileNotFoundError(f'Signature folder not found: {root}')
    if not os.path.isdir(root):
      raise ValueError(f'Signature root {root} is not a directory; expected '
                       'a folder with one sub-folder of images per signer')
    subdirs = sorted(
        d for d in os.listdir(root)
        if not d.startswith('.') and os.path.isdir(os.path.join(root, d)))
    if not subdirs:
      raise ValueError(f'No signer sub-folders in {root}; expected '
                       'root/<signer>/<image files>')
    files = {}
    for d in subdirs:
      folder = os.path.join(root, d)
      names = sorted(n for n in os.listdir(folder) if _is_image(n) and
                     os.path.isfile(os.path.join(folder, n)))
      if names:
        files[d] = [os.path.join(folder, n) for n in names]
    if not files:
      raise ValueError(
          f'No images in {root}: {len(subdirs)} signer folder(s) but no file '
          f'with extension {IMAGE_EXTENSIONS}')
    return files

  def _load(self, path: str) -> np.ndarray:
    """Reads and preprocesses one file; errors name the path."""
    gray = image_io.load_grayscale(path)  # Its errors name the path.
    try:
      return preprocess.preprocess_scan(gray, res=self.res,
                                        invert=self.invert,
                                        binarize=self.binarize)
    except ValueError as e:
      raise ValueError(f'Cannot use image {path}: {e}') from e

  @property
  def num_skipped(self) -> int:
    return len(self.skipped)

  @property
  def num_writers(self) -> int:
    return len(self.signers)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f'Index {index} out of range for {len(self)} images')
    # A copy, so that in-place edits downstream cannot corrupt the cache.
    return {'image': self.images[index].copy(),
            'writer': self.writers[index]}

  def __repr__(self) -> str:
    return (f'SignatureFolder(root={self.root!r}, split={self.split!r}, '
            f'res={self.res}, images={len(self)}, '
            f'signers={len(self.split_signers)}/{len(self.signers)})')
