"""Paired sketch/photo folders and the pix2pix preprocessing.

Reads datasets in the layout of the Kaggle "Person Face Sketches" dataset and
of CUFS (CUHK Face Sketch database)::

  ROOT/{train,val,test}/{photos,sketches}/NAME.ext

where a sketch and its photo share the file stem NAME (extensions may
differ). A flat ``ROOT/{photos,sketches}`` folder, as written by
``python -m jaxgen.data.sketchify SRC DST``, is read as the train split.
Missing splits are filled in: ``val`` is carved out of ``train``
deterministically and a missing ``test`` falls back to ``val``.

Validation split (``val_split``): ``'folder'`` uses the ``val/`` folder as it
is. ``'stratified'`` pools the ``train/`` and ``val/`` pairs, groups them into
subsets by file-name pattern (``subset_of``: CUFS's ``cuhk_NN`` CUHK-student
faces and ``ar_NNN`` AR faces) and holds out ``val_fraction`` of EVERY subset,
chosen by a hash of the file name alone (``split_names`` with a fixed salt,
not the data seed, so every run and seed sees the same split), training on
the rest; ``test/``, when present, is kept as it is. A ``val/`` folder that
holds one subset only (CUFS's val/ is all AR) hides how the model does on
the others; the stratified split measures every subset.

``paired_transform`` is the pix2pix augmentation (resize, random crop and
flip applied identically to both images, scale to [-1, 1]) as a pure numpy
function of a ``np.random.Generator``, ready for grain's ``random_map``.
"""

import dataclasses
import collections
import hashlib
import logging
import os
import re
from typing import Any, Sequence

import numpy as np
from PIL import Image

SPLITS = ('train', 'val', 'test')
VAL_SPLITS = ('folder', 'stratified')
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
_KINDS = ('sketches', 'photos')
# Channel count each PIL mode decodes to; alpha is dropped, palettes are
# expanded to RGB.
_MODE_CHANNELS = {'1': 1, 'L': 1, 'LA': 1, 'I': 1, 'I;16': 1, 'I;16B': 1,
                  'I;16L': 1, 'F': 1, 'P': 3, 'PA': 3, 'RGB': 3, 'RGBA': 3,
                  'RGBX': 3, 'CMYK': 3, 'YCbCr': 3, 'LAB': 3, 'HSV': 3}
_EXAMPLES = 5

Size = int | tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Pair:
  """One sketch/photo pair: the shared stem and both file paths."""
  name: str
  sketch: str
  photo: str


def _missing_root_message(root: str) -> str:
  return (
      f'paired dataset root {root!r} does not exist. Download the Kaggle '
      '"Person Face Sketches" dataset or CUFS (the CUHK Face Sketch '
      'database) and point the root at the folder holding '
      '{train,val,test}/{photos,sketches}; or build one from any folder of '
      'face photos with `python -m jaxgen.data.sketchify SRC DST`. The '
      '`configs/cgan.py:demo` config needs no files: it trains on procedural '
      'faces.')


def _hw(size: Size) -> tuple[int, int]:
  return (size, size) if isinstance(size, (int, np.integer)) else tuple(size)


def _list_stems(folder: str) -> dict[str, str]:
  """Maps file stem -> path for the images directly inside ``folder``."""
  if not os.path.isdir(folder):
    raise FileNotFoundError(f'missing folder {folder!r}: a split needs both '
                            f'{_KINDS[0]}/ and {_KINDS[1]}/')
  stems: dict[str, str] = {}
  for entry in sorted(os.listdir(folder)):
    stem, ext = os.path.splitext(entry)
    if entry.startswith('.') or ext.lower() not in IMAGE_EXTENSIONS:
      continue
    if stem in stems:
      raise ValueError(f'{folder!r} holds two images with the stem {stem!r} '
                       f'({os.path.basename(stems[stem])}, {entry}); pairs '
                       'are matched by stem, so stems must be unique')
    stems[stem] = os.path.join(folder, entry)
  return stems


def find_pairs(split_dir: str) -> list[Pair]:
  """Pairs ``split_dir/sketches`` with ``split_dir/photos`` by file stem.

  Args:
    split_dir: folder holding ``sketches/`` and ``photos/``.

  Returns:
    Pairs sorted by name.

  Raises:
    FileNotFoundError: if a subfolder is missing.
    ValueError: if the split is empty or some names are unpaired; the
      message counts sketches without photo and photos without sketch and
      gives a few example names of each.
  """
  sketches = _list_stems(os.path.join(split_dir, 'sketches'))
  photos = _list_stems(os.path.join(split_dir, 'photos'))
  if not sketches and not photos:
    raise ValueError(f'split folder {split_dir!r} is empty: no images in '
                     f'sketches/ or photos/ ({", ".join(IMAGE_EXTENSIONS)})')
  lonely_sketches = sorted(set(sketches) - set(photos))
  lonely_photos = sorted(set(photos) - set(sketches))
  if lonely_sketches or lonely_photos:
    raise ValueError(
        f'unpaired files in {split_dir!r}: {len(lonely_sketches)} sketch(es) '
        f'without a photo (e.g. {lonely_sketches[:_EXAMPLES]}) and '
        f'{len(lonely_photos)} photo(s) without a sketch (e.g. '
        f'{lonely_photos[:_EXAMPLES]}); '
        f'{len(set(sketches) & set(photos))} names match. A sketch and its '
        'photo must share the file stem.')
  return [Pair(n, sketches[n], photos[n]) for n in sorted(sketches)]


def _split_key(seed: int, name: str) -> bytes:
  return hashlib.sha1(f'{seed}:{name}'.encode()).digest()


def split_names(names: Sequence[str], val_fraction: float,
                seed: int = 0) -> tuple[list[str], list[str]]:
  """Deterministically splits names into train and validation names.

  Names are ranked by a seeded hash and the first ``round(n *
  val_fraction)`` (at least 1 when the fraction is positive and n >= 2) go to
  validation. Hash ranking (rather than a permutation of the list) means the
  result does not depend on the order the names come in, and is the same on
  every machine and Python version.

  Args:
    names: unique names.
    val_fraction: fraction in [0, 1) sent to validation.
    seed: seed of the ranking.

  Returns:
    (train names, validation names), each sorted.
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
  n = len(names)
  n_val = int(round(n * val_fraction))
  if val_fraction > 0 and n >= 2:
    n_val = min(max(n_val, 1), n - 1)
  ranked = sorted(names, key=lambda name: _split_key(seed, name))
  return sorted(ranked[n_val:]), sorted(ranked[:n_val])


def check_val_split(val_split: str) -> None:
  """Raises a ValueError naming config.data.val_split unless it is valid."""
  if val_split not in VAL_SPLITS:
    raise ValueError(f'unknown config.data.val_split {val_split!r}; valid: '
                     f'{VAL_SPLITS}')


def subset_of(name: str) -> str:
  """The subset (file-name pattern group) a pair belongs to.

  Rule: the text before the first digit of the stem, lower-cased, without
  trailing separators (``_``, ``-``, ``.``, space): ``'cuhk_07'`` -> ``'cuhk'``,
  ``'ar_012'`` -> ``'ar'``, ``'F2-005'`` -> ``'f'``. Stems without a digit,
  or starting with one (``'0042'``), all fall into the one fallback subset
  ``''``, so a dataset of plain numbered files is a single subset.

  Args:
    name: a pair's file stem.

  Returns:
    The subset's name ('' for the fallback subset).
  """
  match = re.match(r'(\D*)\d', name)
  return match.group(1).rstrip('_-. ').lower() if match else ''


def stratified_split(names: Sequence[str], val_fraction: float
                     ) -> tuple[list[str], list[str]]:
  """Holds out ``val_fraction`` of every subset (``subset_of``) of names.

  Each subset is split by ``split_names`` with the fixed salt 0: which names
  are held out depends on the names alone (not on a seed or their order).
  A subset of at least 2 names gives at least one to validation (and keeps
  at least one for training) when the fraction is positive.

  Args:
    names: unique pair names.
    val_fraction: fraction in [0, 1) of each subset held out.

  Returns:
    (train names, validation names), each sorted.
  """
  groups = collections.defaultdict(list)
  for name in names:
    groups[subset_of(name)].append(name)
  train, val = [], []
  for group in groups.values():
    t, v = split_names(group, val_fraction, seed=0)
    train += t
    val += v
  return sorted(train), sorted(val)


def subset_counts(pairs: Sequence[Pair]) -> dict[str, int]:
  """{subset: number of pairs} (``subset_of``), subsets sorted by name."""
  counts = collections.Counter(subset_of(p.name) for p in pairs)
  return dict(sorted(counts.items()))


def _stratify(splits: dict[str, list[Pair]], root: str,
              val_fraction: float) -> None:
  """Replaces ``splits``' train and val by a stratified split of both."""
  pooled = {}
  for pair in splits['train'] + splits.get('val', []):
    if pair.name in pooled:
      raise ValueError(
          f'{root!r}: the name {pair.name!r} is in both train/ and val/; '
          'val_split="stratified" pools them, so names must be unique')
    pooled[pair.name] = pair
  train_names, val_names = stratified_split(list(pooled), val_fraction)
  splits['train'] = [pooled[n] for n in train_names]
  splits['val'] = [pooled[n] for n in val_names]
  logging.info('%s: stratified val split (val_fraction=%g): train %s, val %s '
               '(pairs per name subset)', root, val_fraction,
               subset_counts(splits['train']), subset_counts(splits['val']))


def resolve_splits(root: str, val_fraction: float = 0.1, seed: int = 0,
                   val_split: str = 'folder') -> dict[str, list[Pair]]:
  """Finds the train/val/test pairs under ``root``, filling in missing splits.

  ``val_split='folder'``: ``val`` missing is carved out of ``train`` with
  ``split_names`` (those pairs leave train). ``val_split='stratified'``:
  train and val are a ``stratified_split`` of the pooled train and val pairs
  (see the module docstring). ``test`` missing: a copy of ``val``, with a
  logged note. A root holding ``photos/`` and ``sketches/`` directly counts
  as ``train``.

  Args:
    root: dataset root.
    val_fraction: fraction of train used as val when there is no val split
      ('folder'), or of every subset ('stratified').
    seed: seed of the carving of a missing val split ('folder' only).
    val_split: 'folder' or 'stratified'.

  Returns:
    Dict split name -> list of ``Pair``.

  Raises:
    FileNotFoundError: if the root or the train split is missing.
    ValueError: for empty or unpaired splits, an unknown ``val_split``, or a
      name in both train/ and val/ when stratifying.
  """
  check_val_split(val_split)
  if not os.path.isdir(root):
    raise FileNotFoundError(_missing_root_message(root))
  present = [s for s in SPLITS if os.path.isdir(os.path.join(root, s))]
  if not present and all(os.path.isdir(os.path.join(root, k))
                         for k in _KINDS):
    present, dirs = ['train'], {'train': root}
  else:
    dirs = {s: os.path.join(root, s) for s in present}
  if 'train' not in present:
    raise FileNotFoundError(
        f'{root!r} has no train/ split (found: {present or "nothing"}); '
        'expected ROOT/{train,val,test}/{photos,sketches}/NAME.ext or '
        'ROOT/{photos,sketches}/NAME.ext')
  splits = {s: find_pairs(dirs[s]) for s in present}
  if val_split == 'stratified':
    _stratify(splits, root, val_fraction)
  elif 'val' not in splits:
    by_name = {p.name: p for p in splits['train']}
    train_names, val_names = split_names(list(by_name), val_fraction, seed)
    splits['train'] = [by_name[n] for n in train_names]
    splits['val'] = [by_name[n] for n in val_names]
    logging.info('%s: no val/ split; took %d of %d train pairs as val '
                 '(val_fraction=%g, seed=%d)', root, len(val_names),
                 len(by_name), val_fraction, seed)
  if 'test' not in splits:
    splits['test'] = list(splits['val'])
    logging.info('%s: no test/ split; using the val split (%d pairs) as test',
                 root, len(splits['test']))
  return splits


def _channels(path: str) -> int:
  with Image.open(path) as im:
    if im.mode not in _MODE_CHANNELS:
      raise ValueError(f'{path}: unsupported image mode {im.mode!r}')
    return _MODE_CHANNELS[im.mode]


def _load(path: str, channels: int, kind: str, hw: tuple[int, int]):
  """Decodes ``path`` to uint8 [h, w, channels], checking its channels."""
  with Image.open(path) as im:
    found = _MODE_CHANNELS.get(im.mode)
    if found != channels:
      raise ValueError(
          f'{path}: this {kind[:-1]} has {found} channel(s) (mode '
          f'{im.mode!r}) but the dataset\'s {kind} have {channels}; convert '
          'the file or set the expected channels to match')
    if im.mode.startswith('I'):
      # 16-bit greyscale: PIL's convert('L') clips instead of scaling.
      a = np.asarray(im, np.float32)
      im = Image.fromarray(np.uint8(np.clip(
          a / (257.0 if a.max() > 255 else 1.0), 0, 255)))
    im = im.convert('L' if channels == 1 else 'RGB')
    if im.size != (hw[1], hw[0]):
      im = im.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
    return np.asarray(im, np.uint8).reshape(hw[0], hw[1], channels)


class PairedFolder:
  """Random-access source of (sketch, photo) pairs from a paired folder.

  Follows grain's RandomAccessDataSource protocol (``__len__``,
  ``__getitem__``). Elements are ``{'sketch': float32 [H, W, Cs], 'photo':
  float32 [H, W, Cp]}`` in [0, 1] at ``load_size``. The channel counts come
  from the files (greyscale -> 1, colour -> 3; alpha is dropped) and are
  never broadcast: every file must match the split's first file.
  """

  def __init__(self, root: str, split: str = 'train', load_size: Size = 286,
               *, sketch_channels: int | None = None,
               photo_channels: int | None = None, val_fraction: float = 0.1,
               seed: int = 0, cache_bytes: int = 1 << 30,
               val_split: str = 'folder'):
    """Resolves the split and checks channels.

    Args:
      root: dataset root (see module docstring).
      split: 'train', 'val' or 'test'.
      load_size: every image is resized to this (int: square; or (H, W)).
      sketch_channels: expected sketch channels, or None to take them from
        the data.
      photo_channels: expected photo channels, or None.
      val_fraction: fraction of train used as val when there is no val/.
      seed: seed of that split.
      cache_bytes: decoded images are kept in memory (uint8) when the whole
        split fits in this many bytes; 0 disables the cache.
      val_split: 'folder' (val/ as it is) or 'stratified' (see
        ``resolve_splits``).

    Raises:
      FileNotFoundError: missing root or folders.
      ValueError: unknown or empty split, unpaired names, channel mismatch.
    """
    if split not in SPLITS:
      raise ValueError(f'unknown split {split!r}; choose one of {SPLITS}')
    self._pairs = resolve_splits(root, val_fraction, seed, val_split)[split]
    if not self._pairs:
      raise ValueError(
          f'the {split} split of {root!r} is empty: with no val/ folder, val '
          f'(and test) are carved from train with val_fraction='
          f'{val_fraction}, which needs a fraction > 0 and at least 2 train '
          'pairs; add a val/ folder or raise val_fraction')
    self._hw = _hw(load_size)
    first = self._pairs[0]
    self.sketch_channels = _channels(first.sketch)
    self.photo_channels = _channels(first.photo)
    for kind, path, found, expected in (
        ('sketches', first.sketch, self.sketch_channels, sketch_channels),
        ('photos', first.photo, self.photo_channels, photo_channels)):
      if expected is not None and found != expected:
        raise ValueError(f'{path}: expected {kind} with {expected} '
                         f'channel(s), found {found}')
    per_item = self._hw[0] * self._hw[1] * (self.sketch_channels +
                                             self.photo_channels)
    self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = (
        {} if per_item * len(self._pairs) <= cache_bytes else None)

  @property
  def pairs(self) -> list[Pair]:
    """The pairs of this split, in element order."""
    return list(self._pairs)

  def __len__(self) -> int:
    return len(self._pairs)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if index < 0:
      index += len(self._pairs)
    cached = self._cache.get(index) if self._cache is not None else None
    if cached is None:
      pair = self._pairs[index]
      cached = (_load(pair.sketch, self.sketch_channels, 'sketches', self._hw),
                _load(pair.photo, self.photo_channels, 'photos', self._hw))
      if self._cache is not None:
        self._cache[index] = cached
    scale = np.float32(1 / 255)
    return {'sketch': cached[0].astype(np.float32) * scale,
            'photo': cached[1].astype(np.float32) * scale}

  def __repr__(self) -> str:
    return (f'PairedFolder(n={len(self)}, load_size={self._hw}, '
            f'channels=({self.sketch_channels}, {self.photo_channels}))')


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """Bicubic resize of a float [H, W, C] image, clipped to [0, 1]."""
  if image.shape[:2] == hw:
    return image
  planes = [np.asarray(Image.fromarray(np.ascontiguousarray(
      image[..., c], np.float32)).resize((hw[1], hw[0]),
                                         Image.Resampling.BICUBIC))
            for c in range(image.shape[-1])]
  return np.clip(np.stack(planes, -1), 0.0, 1.0)


def paired_transform(sketch: np.ndarray, photo: np.ndarray,
                     rng: np.random.Generator, *, load_size: Size,
                     crop_size: Size, flip: bool = True,
                     train: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """The pix2pix preprocessing, applied identically to a sketch and photo.

  Training: resize both to ``load_size``, take the same random
  ``crop_size`` crop of both, flip both horizontally with probability 1/2
  (if ``flip``). Testing (``train=False``): resize both straight to
  ``crop_size``, as pix2pix does at test time (no crop, no flip), so the
  output is deterministic and shows the whole image.

  Args:
    sketch: float [H, W, Cs] in [0, 1].
    photo: float [H, W, Cp] in [0, 1] (same H, W as the sketch).
    rng: generator for the crop offset and the flip (unused at test time).
    load_size: resize target before cropping (int or (H, W)).
    crop_size: output size (int or (H, W)), at most load_size.
    flip: whether to randomly flip when training.
    train: training (random) or test (deterministic) preprocessing.

  Returns:
    (sketch, photo), float32 [crop_h, crop_w, C] in [-1, 1].
  """
  if sketch.ndim != 3 or photo.ndim != 3:
    raise ValueError(f'expected [H, W, C] images, got sketch {sketch.shape} '
                     f'and photo {photo.shape}')
  if sketch.shape[:2] != photo.shape[:2]:
    raise ValueError(f'sketch {sketch.shape} and photo {photo.shape} differ '
                     'in size; the pair must be aligned')
  load, crop = _hw(load_size), _hw(crop_size)
  if crop[0] > load[0] or crop[1] > load[1]:
    raise ValueError(f'crop_size {crop} exceeds load_size {load}')
  if train:
    sketch, photo = _resize(sketch, load), _resize(photo, load)
    top = int(rng.integers(0, load[0] - crop[0] + 1))
    left = int(rng.integers(0, load[1] - crop[1] + 1))
    window = (slice(top, top + crop[0]), slice(left, left + crop[1]))
    sketch, photo = sketch[window], photo[window]
    if flip and rng.random() < 0.5:
      sketch, photo = sketch[:, ::-1], photo[:, ::-1]
  else:
    sketch, photo = _resize(sketch, crop), _resize(photo, crop)
  return (np.ascontiguousarray(sketch * 2 - 1, np.float32),
          np.ascontiguousarray(photo * 2 - 1, np.float32))


class PairedTransform:
  """``paired_transform`` on ``{'sketch', 'photo'}`` elements.

  A callable ``(element, rng) -> element``, the form grain's
  ``MapDataset.random_map`` accepts; other keys pass through unchanged.
  """

  def __init__(self, *, load_size: Size, crop_size: Size, flip: bool = True,
               train: bool = True):
    self.load_size, self.crop_size = load_size, crop_size
    self.flip, self.train = flip, train

  def __call__(self, element: dict[str, Any],
               rng: np.random.Generator) -> dict[str, Any]:
    sketch, photo = paired_transform(
        element['sketch'], element['photo'], rng, load_size=self.load_size,
        crop_size=self.crop_size, flip=self.flip, train=self.train)
    return {**element, 'sketch': sketch, 'photo': photo}

  random_map = __call__
