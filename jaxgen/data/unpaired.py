"""Two unpaired image domains for CycleGAN: A (photos, RGB), B (sketches).

Registered names (see jaxgen/data/pipeline.py):

  unpaired_folders      domain A images from `a_root`, domain B from
                        `b_root` (any two folders, e.g. celeba_10k photos
                        against CUFS sketches), or both from a paired layout
                        `root/{train,val}/{photos,sketches}` (CUFS) with the
                        pairing ignored for training.
  unpaired_procedural   the embedded procedural faces (no files): domain A
                        photos and domain B sketches of *different* faces.

Elements are {"a": [s, s, a_channels], "b": [s, s, b_channels]} in [-1, 1].
Any image is converted to its domain's channels (grey photos are repeated to
RGB, colour sketches turned into luma), never an error.

Training: an epoch is the larger domain, visited in a shuffled order (grain
reshuffles it every epoch); each of its images is paired with a random image
of the smaller domain drawn from the element's own seeded generator, as the
reference implementation draws B at random. So the two streams are shuffled
independently, deterministically under `config.seed`, and the iterator
position in the checkpoint restores both. Each image is resized to
`load_size` (286 for 256 px), randomly cropped to `crop_size` and flipped
with probability 1/2 (`flip`), each domain independently.

Evaluation ("test" split, deterministic, resized to `crop_size`): with a
paired layout (`root`) or the procedural faces the test elements are true
pairs (photo i with its own sketch), so translations can be scored against
ground truth (`data.paired_eval`, set by `data_config`); with two unrelated
folders they are not, and only set-level metrics (FID) mean anything. With a
paired layout, `val_split` = "stratified" tests on `val_fraction` of every
file-name subset of train/ + val/ and trains on the other pairs' images,
as the paired_folder source of pix2pix does (jaxgen/data/paired.py).
"""

import os
from typing import Dict, List, Optional

import ml_collections
import numpy as np
from PIL import Image

from jaxgen.data import faces
from jaxgen.data import paired
from jaxgen.data import paired_datasets
from jaxgen.data import pipeline
from jaxgen.data import sketchify

SOURCES = ("unpaired_folders", "unpaired_procedural")


def data_config(name: str, res: int, root: str = "", a_root: str = "",
                b_root: str = "", **overrides) -> ml_collections.ConfigDict:
  """A `config.data` for the builders of this module.

  Args:
    name: "unpaired_folders" or "unpaired_procedural".
    res: crop size; images are loaded at res * 286 / 256 first (CycleGAN's
      286 -> 256).
    root: a paired-layout folder ({train,val}/{photos,sketches}).
    a_root: a folder of domain A images (instead of `root`).
    b_root: a folder of domain B images (with `a_root`).
    **overrides: any other field.

  Returns:
    A ConfigDict.
  """
  c = ml_collections.ConfigDict(dict(
      name=name,
      root=root,
      a_root=a_root,
      b_root=b_root,
      crop_size=res,
      load_size=int(round(res * 286 / 256 / 2)) * 2,
      flip=True,
      a_channels=3,            # Domain A: RGB photos.
      b_channels=1,            # Domain B: greyscale sketches.
      # Test elements are true (a, b) pairs: from a paired layout or the
      # procedural faces, not from two unrelated folders.
      paired_eval=name == "unpaired_procedural" or not (a_root or b_root),
      eval_split="val",        # Paired-layout split evaluated on.
      # Paired layout: "folder" = its val/ as it is; "stratified" = trains
      # and tests on a split of train/ + val/ pairs holding out val_fraction
      # of every file-name subset (jaxgen/data/paired.py).
      val_split="folder",
      val_fraction=0.1,        # Held out when there is no such split (or
                               # from every subset when stratified).
      seed=0,
      sketch_method="xdog",    # unpaired_procedural only.
      num_train=2000,          # unpaired_procedural: images per domain...
      num_test=64,             # ...and test pairs.
      cache_mb=1024,           # Keep decoded elements in memory (uint8).
  ))
  c.update(overrides)
  return c


def load_image(path: str, size: int, channels: int) -> np.ndarray:
  """Decodes an image, resized to size x size, with the given channels.

  Args:
    path: image file.
    size: output side (bicubic resize of the whole image, as the reference
      implementation's resize_and_crop; aspect ratio is not kept).
    channels: 1 (luma, PIL "L") or 3 (RGB; grey images are repeated).

  Returns:
    float32 [size, size, channels] in [0, 1].

  Raises:
    ValueError: naming the file when it cannot be decoded.
  """
  try:
    with Image.open(path) as im:
      im = im.convert("L" if channels == 1 else "RGB")
      im = im.resize((size, size), Image.Resampling.BICUBIC)
      arr = np.asarray(im, np.float32) / 255.0
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f"cannot read image {path!r} ({e}); remove or replace "
                     "the file") from e
  return arr.reshape(size, size, channels)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
  """[h, w, c] in [0, 1] -> [h, w, channels] (luma or repeated grey)."""
  if image.shape[-1] == channels:
    return image
  if channels == 1:
    rgb = image[..., :3]
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  return np.repeat(image[..., :1], channels, axis=-1)


class _Files:
  """Random-access source of single images {key: [size, size, c]}."""

  def __init__(self, paths: List[str], key: str, size: int, channels: int):
    self._paths, self._key = list(paths), key
    self._size, self._channels = size, channels

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, index):
    return {self._key: load_image(self._paths[int(index)], self._size,
                                  self._channels)}


class _FaceDomain:
  """One domain of the procedural faces: photos or sketches of faces."""

  def __init__(self, pairs: faces.ProceduralFacePairs, key: str,
               channels: int):
    self._pairs, self._key, self._channels = pairs, key, channels

  def __len__(self):
    return len(self._pairs)

  def __getitem__(self, index):
    elem = self._pairs[int(index)]
    image = elem["photo"] if self._key == "a" else elem["sketch"]
    return {self._key: to_channels(image, self._channels)}


class _Zip:
  """Element i = {a: A[i % nA], b: B[i % nB]}; length max(nA, nB)."""

  def __init__(self, a_source, b_source):
    self.a, self.b = a_source, b_source

  def __len__(self):
    return max(len(self.a), len(self.b))

  def __getitem__(self, index):
    index = int(index)
    return {**self.a[index % len(self.a)], **self.b[index % len(self.b)]}


def _crop_flip(image: np.ndarray, rng: np.random.Generator, crop: int,
               flip: bool) -> np.ndarray:
  top = int(rng.integers(0, image.shape[0] - crop + 1))
  left = int(rng.integers(0, image.shape[1] - crop + 1))
  image = image[top:top + crop, left:left + crop]
  if flip and rng.random() < 0.5:
    image = image[:, ::-1]
  return image


class UnpairedTransform:
  """Training map: redraw the smaller domain at random, crop and flip each.

  A callable (element, rng) -> element for grain's `random_map`; the element
  comes from `_Zip`, images in [0, 1] at the load size; the output is in
  [-1, 1] at the crop size.
  """

  def __init__(self, zipped: _Zip, crop_size: int, flip: bool):
    self._zip, self._crop, self._flip = zipped, crop_size, flip

  def __call__(self, element: Dict[str, np.ndarray],
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    element = dict(element)
    a, b = self._zip.a, self._zip.b
    if len(a) != len(b):
      smaller = a if len(a) < len(b) else b
      element.update(smaller[int(rng.integers(0, len(smaller)))])
    for key in ("a", "b"):
      image = _crop_flip(element[key], rng, self._crop, self._flip)
      element[key] = np.ascontiguousarray(image * 2.0 - 1.0, np.float32)
    return element

  random_map = __call__


class _Signed:
  """Test elements: [0, 1] images -> [-1, 1] float32."""

  def __init__(self, source):
    self._source = source

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return {k: (v * 2.0 - 1.0).astype(np.float32)
            for k, v in self._source[index].items()}


def _images(folder: str, what: str) -> List[str]:
  if not os.path.isdir(folder):
    raise FileNotFoundError(f"{what} folder {folder!r} does not exist")
  paths = sketchify.list_images(folder)
  if not paths:
    raise FileNotFoundError(
        f"{what} folder {folder!r} holds no images "
        f"({', '.join(paired.IMAGE_EXTENSIONS)})")
  return paths


def _split(paths: List[str], base: str, split: str, cfg) -> List[str]:
  """Deterministic hash split of one folder's images (val_fraction)."""
  by_rel = {os.path.relpath(p, base): p for p in paths}
  train, val = paired.split_names(sorted(by_rel), cfg.val_fraction, cfg.seed)
  names = train if split == "train" else val
  if not names:
    raise ValueError(f"no {split} images in {base!r} after holding out "
                     f"val_fraction={cfg.val_fraction}")
  return [by_rel[n] for n in names]


def _stratified_sources(cfg, split: str, size: int):
  """(A source, B source) of a stratified split of a paired layout: the
  photos and sketches of the training pairs, or the held-out pairs."""
  splits = paired.resolve_splits(cfg.root, cfg.val_fraction, cfg.seed,
                                 val_split="stratified")
  pairs = splits["train" if split == "train" else
                 (cfg.eval_split if cfg.eval_split in ("val", "test")
                  else "val")]
  return (_Files([p.photo for p in pairs], "a", size, cfg.a_channels),
          _Files([p.sketch for p in pairs], "b", size, cfg.b_channels))


def _layout_sources(cfg, split: str, size: int):
  """(A source, B source) from a paired layout ROOT/{train,val}/..."""
  if not os.path.isdir(cfg.root):
    raise FileNotFoundError(f"config.data.root {cfg.root!r} does not exist")
  val_split = cfg.get("val_split", "folder")
  paired.check_val_split(val_split)
  if val_split == "stratified":
    return _stratified_sources(cfg, split, size)
  train_dir = os.path.join(cfg.root, "train")
  eval_dir: Optional[str] = None
  for name in (cfg.eval_split, "val", "test"):
    if os.path.isdir(os.path.join(cfg.root, name)) and name != "train":
      eval_dir = os.path.join(cfg.root, name)
      break
  if split == "train":
    a = _images(os.path.join(train_dir, "photos"), "domain A (photos)")
    b = _images(os.path.join(train_dir, "sketches"), "domain B (sketches)")
    if eval_dir is None:  # Hold out the validation pairs' names.
      held = {p.name for p in _held_out_pairs(cfg, train_dir)}
      stem = lambda p: os.path.splitext(os.path.basename(p))[0]
      a = [p for p in a if stem(p) not in held]
      b = [p for p in b if stem(p) not in held]
  else:
    pairs = (paired.find_pairs(eval_dir) if eval_dir
             else _held_out_pairs(cfg, train_dir))
    if not pairs:
      raise ValueError(f"no photo/sketch pairs for the test split under "
                       f"{eval_dir or train_dir!r}")
    a = [p.photo for p in pairs]
    b = [p.sketch for p in pairs]
  return (_Files(a, "a", size, cfg.a_channels),
          _Files(b, "b", size, cfg.b_channels))


def _held_out_pairs(cfg, train_dir: str):
  pairs = paired.find_pairs(train_dir)
  _, val = paired.split_names([p.name for p in pairs], cfg.val_fraction,
                              cfg.seed)
  val = set(val)
  return [p for p in pairs if p.name in val]


@pipeline.register("unpaired_folders")
def build_unpaired_folders(cfg: ml_collections.ConfigDict,
                           split: str) -> pipeline.Dataset:
  """Domain A and B images from folders (see the module docstring)."""
  size = cfg.load_size if split == "train" else cfg.crop_size
  try:
    if cfg.a_root or cfg.b_root:
      if not (cfg.a_root and cfg.b_root):
        raise ValueError("set both config.data.a_root and config.data.b_root "
                         "(or config.data.root for a paired layout)")
      sources = []
      for key, root, what in (("a", cfg.a_root, "domain A (a_root)"),
                              ("b", cfg.b_root, "domain B (b_root)")):
        paths = _split(_images(root, what), root, split, cfg)
        sources.append(_Files(paths, key, size,
                              cfg[f"{key}_channels"]))
    elif cfg.root:
      sources = _layout_sources(cfg, split, size)
    else:
      raise FileNotFoundError(
          "no data folders set: use config.data.root (a folder holding "
          "{train,val}/{photos,sketches}, e.g. ../shared/data/cufs), or "
          "config.data.a_root and config.data.b_root (any two image "
          "folders); configs/cyclegan.py:demo needs no files")
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f"Cannot build the unpaired dataset: {e}") from e
  return _finish(cfg, sources, split, {"sizes": [len(s) for s in sources]})


@pipeline.register("unpaired_procedural")
def build_unpaired_procedural(cfg: ml_collections.ConfigDict,
                              split: str) -> pipeline.Dataset:
  """Procedural faces: A and B from disjoint faces; test = true pairs."""
  if split == "train":
    num = cfg.num_train
    if num < 1:
      raise ValueError(f"config.data.num_train={num}: the train split is "
                       "empty")
    make = lambda offset: faces.ProceduralFacePairs(
        num, size=cfg.load_size, seed=cfg.seed,
        sketch_method=cfg.sketch_method, offset=offset)
    # Photos of faces [0, n), sketches of faces [n, 2n): never the same face.
    sources = (_FaceDomain(make(0), "a", cfg.a_channels),
               _FaceDomain(make(num), "b", cfg.b_channels))
  else:
    if cfg.num_test < 1:
      raise ValueError(f"config.data.num_test={cfg.num_test}: the test split "
                       "is empty")
    pairs = faces.ProceduralFacePairs(
        cfg.num_test, size=cfg.crop_size, seed=cfg.seed,
        sketch_method=cfg.sketch_method, offset=2 * cfg.num_train)
    sources = (_FaceDomain(pairs, "a", cfg.a_channels),
               _FaceDomain(pairs, "b", cfg.b_channels))
  return _finish(cfg, sources, split, {"sizes": [len(s) for s in sources]})


def _finish(cfg, sources, split: str, info) -> pipeline.Dataset:
  cache = int(cfg.cache_mb) << 20
  a, b = (paired_datasets.Cached(s, cache // 2) for s in sources)
  zipped = _Zip(a, b)
  if split == "train":
    return pipeline.Dataset(
        zipped, UnpairedTransform(zipped, cfg.crop_size, cfg.flip), info)
  return pipeline.Dataset(_Signed(zipped), None, info)
