"""Dataset builders for sketch -> photo translation (pix2pix batches).

Registered names (see jaxgen/data/pipeline.py):

  paired_folder       ROOT/{train,val,test}/{photos,sketches}/NAME.ext
                      (Kaggle "Person Face Sketches", CUFS), via PairedFolder;
                      `val_split` = "folder" evaluates on val/ as it is,
                      "stratified" on `val_fraction` of every file-name
                      subset of train/ + val/ (jaxgen/data/paired.py).
  procedural_faces    the embedded procedural faces with their sketches
                      (no files needed), via ProceduralFacePairs.
  sketchified_folder  any folder of photos, sketched on the fly; class
                      labels from the first sub-folder level.

Every builder yields elements {"sketch": [s, s, Cs], "photo": [s, s, Cp]}
in [-1, 1] (plus an int32 "label" when `data.num_classes` > 0). Training
elements are stored at `load_size` and go through the pix2pix `augment`
(identical random crop to `crop_size` and flip of the pair); the loop's
"test" split (the folder's `eval_split`, "val" by default) is transformed
deterministically in `__getitem__` (resize to `crop_size`), because the loop
applies no augmentation to evaluation batches. Errors name the offending
config fields.
"""

import contextlib
import csv
import os
from typing import Any, Callable, Dict, Optional

import ml_collections
import numpy as np

from jaxgen.data import faces
from jaxgen.data import paired
from jaxgen.data import pipeline
from jaxgen.data import sketchify

# Hair brightness (mean RGB, 0-255) splitting the procedural faces' hair
# palette into black/dark brown/brown (label 0, about 64% of faces) and light
# brown/auburn/blond/grey (label 1): the palette has a gap between 63 and 71
# around this value, so the classes are visibly distinct.
HAIR_THRESHOLD = 67.0
HAIR_CLASSES = ("dark_hair", "light_hair")


def data_config(name: str, res: int, root: str = "", num_classes: int = 0,
                **overrides) -> ml_collections.ConfigDict:
  """A `config.data` for the builders of this module.

  Args:
    name: "paired_folder", "procedural_faces" or "sketchified_folder".
    res: output (crop) size; images are loaded at ~res * 286 / 256 first, as
      pix2pix does (286 -> 256).
    root: data folder (unused by procedural_faces).
    num_classes: > 0 adds a "label" to every element.
    **overrides: any other field.

  Returns:
    A ConfigDict.
  """
  c = ml_collections.ConfigDict(dict(
      name=name,
      root=root,
      crop_size=res,
      load_size=int(round(res * 286 / 256 / 2)) * 2,
      flip=True,
      num_classes=num_classes,
      eval_split="val",        # Folder split the loop evaluates on.
      # paired_folder: "folder" = val/ as it is; "stratified" = val_fraction
      # of every file-name subset of train/ + val/ (paired.subset_of).
      val_split="folder",
      val_fraction=0.1,        # Carved from train when there is no val/
                               # (or from every subset when stratified).
      seed=0,
      sketch_channels=0,       # Expected channels; 0 = take from the data.
      photo_channels=0,
      labels_csv="",           # paired_folder labels: CSV "name,label".
      sketch_method="xdog",    # procedural_faces / sketchified_folder.
      num_train=2000,          # procedural_faces only.
      num_test=64,
      cache_mb=1024,           # Keep decoded/rendered elements in memory.
  ))
  c.update(overrides)
  return c


def hair_label(face_seed: int) -> int:
  """The class of a procedural face: 0 dark hair, 1 light hair.

  Read from the face's drawn attributes (its hair colour), not from pixels,
  so it is exact.

  Args:
    face_seed: a `render_face` seed (`ProceduralFacePairs.face_seed(i)`).

  Returns:
    0 or 1 (see HAIR_THRESHOLD).
  """
  # pylint: disable-next=protected-access
  hair = faces._params(face_seed)["hair"]
  return int(float(np.mean(hair)) > HAIR_THRESHOLD)


class Cached:
  """Keeps elements of a slow source in memory as uint8 (values in [0, 1]).

  Elements are decoded on first access; `label` (and other integer arrays)
  are kept as they are. Stops caching once `max_bytes` are used.
  """

  def __init__(self, source, max_bytes: int):
    self._source, self._max = source, max_bytes
    self._cache: Dict[int, Dict[str, np.ndarray]] = {}
    self._bytes = 0

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    index = int(index)
    hit = self._cache.get(index)
    if hit is None:
      elem = self._source[index]
      hit = {k: (np.round(np.clip(v, 0, 1) * 255).astype(np.uint8)
                 if np.issubdtype(v.dtype, np.floating) else v)
             for k, v in elem.items()}
      size = sum(v.nbytes for v in hit.values())
      if self._bytes + size > self._max:
        return elem
      self._cache[index] = hit
      self._bytes += size
    return {k: (v.astype(np.float32) * np.float32(1 / 255)
                if v.dtype == np.uint8 else v) for k, v in hit.items()}


class _Mapped:
  """A source whose elements pass through a deterministic function."""

  def __init__(self, source, fn: Callable[[Dict[str, Any]], Dict[str, Any]]):
    self._source, self._fn = source, fn

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return self._fn(self._source[index])


class _Labelled:
  """Adds {"label": int32} from a list of labels to a source's elements."""

  def __init__(self, source, labels):
    if len(labels) != len(source):
      raise ValueError(f"{len(labels)} labels for {len(source)} elements.")
    self._source, self._labels = source, np.asarray(labels, np.int32)

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    return {**self._source[index], "label": self._labels[int(index)]}


class _SketchedPhotos:
  """Photos from a list of files with their on-the-fly sketches, in [0, 1]."""

  def __init__(self, paths, size: int, method: str):
    self._paths, self._size, self._method = list(paths), size, method

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, index):
    photo = sketchify.load_photo(self._paths[int(index)], self._size)
    sketch = sketchify.sketchify(photo, self._method)
    return {"sketch": sketch[..., None], "photo": photo}


@contextlib.contextmanager
def _config_errors(cfg):
  """Re-raises data errors with the config fields that led to them."""
  try:
    yield
  except (FileNotFoundError, ValueError) as e:
    where = f"config.data.name={cfg.name!r}"
    if cfg.name != "procedural_faces":
      where += f", config.data.root={cfg.root!r}"
    raise type(e)(f"Cannot build the dataset ({where}): {e}") from e


def _finish(cfg, source, split: str, info: Dict[str, Any]) -> pipeline.Dataset:
  """Adds the pix2pix transform: random for train, deterministic for test."""
  if split == "train":
    augment = paired.PairedTransform(load_size=cfg.load_size,
                                     crop_size=cfg.crop_size, flip=cfg.flip)
    return pipeline.Dataset(source, augment, info)
  test_tf = paired.PairedTransform(load_size=cfg.crop_size,
                                   crop_size=cfg.crop_size, train=False)
  return pipeline.Dataset(_Mapped(source, lambda e: test_tf(e, None)), None,
                          info)


def _check_channels(cfg, sample):
  for key, want in (("sketch", cfg.sketch_channels),
                    ("photo", cfg.photo_channels)):
    got = sample[key].shape[-1]
    if want and got != want:
      raise ValueError(f"{key}es have {got} channel(s) but "
                       f"config.data.{key}_channels={want}.")


def _csv_labels(path: str, names, num_classes: int):
  """Labels for `names` from a CSV of "name,label" rows (header optional)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"labels CSV {path!r} (config.data.labels_csv) "
                            "does not exist")
  table = {}
  with open(path, newline="") as f:
    for row in csv.reader(f):
      if len(row) >= 2 and row[1].strip().lstrip("-").isdigit():
        table[os.path.splitext(row[0].strip())[0]] = int(row[1])
  missing = [n for n in names if n not in table]
  if missing:
    raise ValueError(f"{len(missing)} pair(s) have no label in {path!r} "
                     f"(e.g. {missing[:5]})")
  labels = [table[n] for n in names]
  bad = sorted({l for l in labels if not 0 <= l < num_classes})
  if bad:
    raise ValueError(f"labels {bad[:5]} in {path!r} are outside [0, "
                     f"{num_classes}) (config.data.num_classes)")
  return labels


@pipeline.register("paired_folder")
def build_paired_folder(cfg: ml_collections.ConfigDict,
                        split: str) -> pipeline.Dataset:
  """Paired sketch/photo folders; the loop's "test" is `cfg.eval_split`."""
  with _config_errors(cfg):
    if not cfg.root:
      raise FileNotFoundError(
          "config.data.root is not set. Point it at a folder holding "
          "{train,val,test}/{photos,sketches}/NAME.ext (the Kaggle \"Person "
          "Face Sketches\" dataset or CUFS), or train on the embedded "
          "procedural faces with --config=configs/cgan.py:demo.")
    folder_split = "train" if split == "train" else cfg.eval_split
    source = paired.PairedFolder(
        cfg.root, folder_split,
        load_size=cfg.load_size if split == "train" else cfg.crop_size,
        sketch_channels=cfg.sketch_channels or None,
        photo_channels=cfg.photo_channels or None,
        val_fraction=cfg.val_fraction, seed=cfg.seed,
        cache_bytes=int(cfg.cache_mb) << 20,
        val_split=cfg.get("val_split", "folder"))
    pairs = source.pairs
    if cfg.num_classes:
      if not cfg.labels_csv:
        raise ValueError("config.data.num_classes > 0 needs "
                         "config.data.labels_csv for paired folders")
      source = _Labelled(source, _csv_labels(
          cfg.labels_csv, [p.name for p in pairs], cfg.num_classes))
    info = {"sketch_channels": source[0]["sketch"].shape[-1],
            "photo_channels": source[0]["photo"].shape[-1],
            "folder_split": folder_split,
            "subsets": paired.subset_counts(pairs)}
    return _finish(cfg, source, split, info)


@pipeline.register("procedural_faces")
def build_procedural_faces(cfg: ml_collections.ConfigDict,
                           split: str) -> pipeline.Dataset:
  """Procedural faces and sketches; labels (if any) are dark/light hair."""
  with _config_errors(cfg):
    train = split == "train"
    num = cfg.num_train if train else cfg.num_test
    if num < 1:
      raise ValueError(f"the {split} split is empty: config.data."
                       f"{'num_train' if train else 'num_test'}={num}")
    # Test faces come after the training faces in the same seed stream.
    pairs = faces.ProceduralFacePairs(
        num, size=cfg.load_size if train else cfg.crop_size, seed=cfg.seed,
        sketch_method=cfg.sketch_method, offset=0 if train else cfg.num_train)
    source = pairs
    if cfg.num_classes:
      if cfg.num_classes != len(HAIR_CLASSES):
        raise ValueError(f"procedural faces have {len(HAIR_CLASSES)} classes "
                         f"{HAIR_CLASSES}, but config.data.num_classes="
                         f"{cfg.num_classes}")
      source = _Labelled(source, [hair_label(pairs.face_seed(i))
                                  for i in range(num)])
    source = Cached(source, int(cfg.cache_mb) << 20)
    _check_channels(cfg, source[0])
    info = {"classes": HAIR_CLASSES if cfg.num_classes else ()}
    return _finish(cfg, source, split, info)


def _split_dirs(root: str, eval_split: str):
  """(train dir, eval dir) if ROOT has train/ and an eval split, else None."""
  train = os.path.join(root, "train")
  for name in (eval_split, "test", "val"):
    if os.path.isdir(train) and os.path.isdir(os.path.join(root, name)):
      return train, os.path.join(root, name)
  return None


def _class_of(path: str, base: str) -> Optional[str]:
  rel = os.path.relpath(path, base).split(os.sep)
  return rel[0] if len(rel) > 1 else None


@pipeline.register("sketchified_folder")
def build_sketchified_folder(cfg: ml_collections.ConfigDict,
                             split: str) -> pipeline.Dataset:
  """Photos under `cfg.root`, sketched on the fly.

  Splits: ROOT/train and ROOT/{eval_split,test,val} when present, otherwise
  a deterministic hash split of all photos (`val_fraction`). With
  `num_classes` > 0 the label is the photo's first sub-folder below the
  split folder (e.g. cat/, dog/), classes in sorted order.
  """
  with _config_errors(cfg):
    if not cfg.root:
      raise FileNotFoundError("config.data.root is not set: point it at a "
                              "folder of photos (class sub-folders for "
                              "labels)")
    dirs = _split_dirs(cfg.root, cfg.eval_split)
    if dirs:
      base = dirs[0] if split == "train" else dirs[1]
      bases = dirs
      paths = sketchify.list_images(base)
    else:
      base, bases = cfg.root, (cfg.root,)
      every = sketchify.list_images(cfg.root)
      by_rel = {os.path.relpath(p, cfg.root): p for p in every}
      train_names, eval_names = paired.split_names(
          list(by_rel), cfg.val_fraction, cfg.seed)
      paths = [by_rel[n] for n in (train_names if split == "train"
                                   else eval_names)]
    if not paths:
      raise ValueError(f"no photos ({', '.join(sketchify.IMAGE_EXTENSIONS)}) "
                       f"for the {split} split under {base!r}")
    size = cfg.load_size if split == "train" else cfg.crop_size
    source = _SketchedPhotos(paths, size, cfg.sketch_method)
    classes = ()
    if cfg.num_classes:
      classes = tuple(sorted(
          {_class_of(p, bases[0]) for p in sketchify.list_images(bases[0])}
          - {None}))
      if len(classes) != cfg.num_classes:
        raise ValueError(
            f"found {len(classes)} class sub-folder(s) {list(classes)[:10]} "
            f"under {bases[0]!r} but config.data.num_classes="
            f"{cfg.num_classes}")
      names = [_class_of(p, base) for p in paths]
      unknown = sorted({n for n in names if n not in classes}, key=str)
      if unknown:
        raise ValueError(f"photos outside the class folders {list(classes)}:"
                         f" {unknown[:5]} under {base!r}")
      source = _Labelled(source, [classes.index(n) for n in names])
    source = Cached(source, int(cfg.cache_mb) << 20)
    _check_channels(cfg, source[0])
    return _finish(cfg, source, split, {"classes": classes})
