"""CIFAR-10 (any subset of its classes) from TFDS, an image folder, or a
procedural stand-in for smoke tests.

`config.data.source` selects where images come from:

  "folder"    `data.root` laid out as `{train,test}/{class}/*.jpg` (or .png),
              class folders named after CIFAR-10 classes (`cat`, `dog`, ...),
              e.g. ../shared/data/cifar10_catdog.
  "tfds"      tensorflow-datasets' `cifar10`, only if it is already prepared
              in the TFDS data dir (`data.tfds_data_dir`, default
              ~/tensorflow_datasets); nothing is ever downloaded here.
  "auto"      "folder" when `data.root` is set, else "tfds" when prepared,
              else an error explaining how to get either.
  "synthetic" simple coloured shapes, one shape per class, drawn from a seed.
              This is a stand-in that lets tests and demos run on a machine
              without data; it is not a dataset and says nothing about CIFAR.

`data.classes` picks the classes, by name or CIFAR-10 id ("cat,dog" or
"3,5"); elements carry the CIFAR-10 id as "label" (int32), whatever the
subset. A split is decoded once into one uint8 array in memory (the 10k
cat/dog images are 30 MB) and `__getitem__` is a lookup plus a float cast.
"""

import colorsys
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import ml_collections
import numpy as np
from PIL import Image

from jaxgen.data import pipeline

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
               "horse", "ship", "truck")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SOURCES = ("auto", "folder", "tfds", "synthetic")

HOW_TO_GET_DATA = """\
Get CIFAR-10 in one of two ways:
  * TFDS (prepared once, then read offline):
      python -m tensorflow_datasets.scripts.download_and_prepare \\
          --datasets=cifar10 [--data_dir=DIR]
    then use --config.data.source=tfds [--config.data.tfds_data_dir=DIR].
  * An image folder, --config.data.source=folder --config.data.root=ROOT with
      ROOT/train/cat/*.jpg  ROOT/train/dog/*.jpg
      ROOT/test/cat/*.jpg   ROOT/test/dog/*.jpg
    (one sub-folder per CIFAR-10 class name: {names}), e.g.
    --config.data.root=../shared/data/cifar10_catdog.
For a smoke test without data use --config.data.source=synthetic (coloured
shapes, not CIFAR)."""


def how_to_get_data() -> str:
  """Instructions for getting CIFAR-10 as TFDS or as an image folder."""
  return HOW_TO_GET_DATA.format(names=", ".join(CLASS_NAMES))


def resolve_classes(classes: Union[str, int, Sequence[Union[str, int]]]
                    ) -> Tuple[int, ...]:
  """CIFAR-10 ids of class names and/or ids, in the given order.

  Args:
    classes: "cat,dog", "3,5", a sequence of names/ids, a single id, or
      "all"/""/None for all ten classes.

  Returns:
    A tuple of distinct ids in [0, 10).

  Raises:
    ValueError: an unknown name or an id out of range, listing valid ones.
  """
  if classes is None or (isinstance(classes, str) and
                         classes.strip().lower() in ("", "all")):
    return tuple(range(len(CLASS_NAMES)))
  if isinstance(classes, (int, np.integer)):
    classes = [classes]
  elif isinstance(classes, str):
    classes = classes.split(",")
  ids = []
  for c in classes:
    key = c.strip().lower() if isinstance(c, str) else c
    if isinstance(key, str) and key.isdigit():
      key = int(key)
    if isinstance(key, (int, np.integer)):
      if not 0 <= key < len(CLASS_NAMES):
        raise ValueError(f"CIFAR-10 class id {key} out of range [0, 10).")
      cid = int(key)
    elif key in CLASS_NAMES:
      cid = CLASS_NAMES.index(key)
    else:
      raise ValueError(
          f"Unknown CIFAR-10 class {c!r} (config.data.classes); valid names: "
          f"{', '.join(CLASS_NAMES)} (or ids 0-9).")
    if cid not in ids:
      ids.append(cid)
  if not ids:
    raise ValueError("config.data.classes selects no class.")
  return tuple(ids)


class ArraySource:
  """Random-access source over in-memory uint8 images and int labels.

  Attributes:
    images: uint8 [n, h, w, 3].
    labels: int32 [n], CIFAR-10 ids.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f"Expected uint8 [n, h, w, c] images, got "
                       f"{images.dtype} {images.shape}.")
    if len(images) != len(labels):
      raise ValueError(f"{len(images)} images but {len(labels)} labels.")
    self.images = images
    self.labels = np.asarray(labels, np.int32)

  def __len__(self) -> int:
    return len(self.images)

  def __getitem__(self, index: int) -> Dict[str, np.ndarray]:
    return {"image": self.images[index].astype(np.float32) / 255.0,
            "label": self.labels[index]}

  def __repr__(self) -> str:
    counts = np.bincount(self.labels, minlength=len(CLASS_NAMES))
    per_class = ", ".join(f"{CLASS_NAMES[i]}={n}" for i, n in
                          enumerate(counts) if n)
    return f"ArraySource({len(self)} images {self.images.shape[1:]}: " \
           f"{per_class})"


def _decode(path: str, res: int) -> np.ndarray:
  with Image.open(path) as img:
    img = img.convert("RGB")
    if img.size != (res, res):
      img = img.resize((res, res), Image.BILINEAR)
    return np.asarray(img, np.uint8)


def load_folder(root: str, split: str, class_ids: Sequence[int],
                res: int = 32) -> ArraySource:
  """Decodes `root/split/<class name>/*.{jpg,jpeg,png}` for the given classes.

  Sub-folders of classes not asked for are ignored. Files are read in sorted
  order, so the source is the same on every machine.

  Args:
    root: the folder holding `train/` and `test/`.
    split: "train" or "test".
    class_ids: CIFAR-10 ids; each needs a non-empty folder named after it.
    res: images of another size are resized (bilinear) to res x res.

  Returns:
    An ArraySource.

  Raises:
    FileNotFoundError: missing root, split folder or class folder.
    ValueError: a class folder without images.
  """
  if not root or not os.path.isdir(root):
    raise FileNotFoundError(
        f"CIFAR image folder {root!r} (config.data.root) does not exist.\n" +
        how_to_get_data())
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise FileNotFoundError(
        f"No {split!r} split folder in {root!r}: expected {split_dir}/"
        "<class name>/*.jpg.\n" + how_to_get_data())
  images, labels = [], []
  for cid in class_ids:
    name = CLASS_NAMES[cid]
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      found = sorted(d for d in os.listdir(split_dir)
                     if os.path.isdir(os.path.join(split_dir, d)))
      raise FileNotFoundError(
          f"No folder for class {name!r} (id {cid}) at {class_dir}; class "
          f"folders found in {split_dir}: {', '.join(found) or 'none'}.")
    files = sorted(f for f in os.listdir(class_dir)
                   if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
      raise ValueError(
          f"Class folder {class_dir} holds no images "
          f"({', '.join(IMAGE_EXTENSIONS)}).")
    images.extend(_decode(os.path.join(class_dir, f), res) for f in files)
    labels.extend([cid] * len(files))
  return ArraySource(np.stack(images), np.asarray(labels, np.int32))


def load_tfds(split: str, class_ids: Sequence[int], data_dir: str = "",
              res: int = 32) -> ArraySource:
  """Reads the given classes of an already prepared TFDS `cifar10`.

  Random access (`as_data_source`) is used when the dataset was prepared in
  a random-access format (array_record); a TFRecord preparation is read
  sequentially once with `as_dataset`.

  Args:
    split: "train" or "test".
    class_ids: CIFAR-10 ids to keep.
    data_dir: TFDS data dir ("" = the TFDS default).
    res: must be 32 (TFDS CIFAR-10 is 32x32; no resizing is done).

  Returns:
    An ArraySource.

  Raises:
    FileNotFoundError: cifar10 is not prepared (nothing is downloaded).
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("config.data.source='tfds' needs tensorflow-datasets.\n"
                      + how_to_get_data()) from e
  if res != 32:
    raise ValueError(f"TFDS cifar10 is 32x32; config.data.res={res}.")
  builder = tfds.builder("cifar10", data_dir=data_dir or None)
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS cifar10 is not prepared in {builder.data_dir!r} and is never "
        "downloaded at run time.\n" + how_to_get_data())
  keep = np.asarray(class_ids)
  try:
    source = builder.as_data_source(split=split)
  except NotImplementedError:  # Prepared as TFRecord: no random access.
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    images, labels = arrays["image"], np.asarray(arrays["label"])
  else:
    elems = [source[i] for i in range(len(source))]
    images = np.stack([e["image"] for e in elems])
    labels = np.asarray([e["label"] for e in elems])
  selected = np.isin(labels, keep)
  return ArraySource(np.asarray(images[selected], np.uint8),
                     labels[selected].astype(np.int32))


# Procedural stand-in: class k is drawn as shape k on a two-tone background.
# Masks take centred coordinates (dy, dx) and a radius r.
_SHAPES = (
    lambda dy, dx, r: dy**2 + dx**2 < r**2,                        # disc
    lambda dy, dx, r: np.maximum(abs(dy), abs(dx)) < 0.8 * r,      # square
    lambda dy, dx, r: (dy < 0.7 * r) & (abs(dx) < (dy + r) / 2),   # triangle
    lambda dy, dx, r: abs(dy) + abs(dx) < r,                       # diamond
    lambda dy, dx, r: abs(dy**2 + dx**2 - 0.5 * r**2) < 0.25 * r**2,  # ring
    lambda dy, dx, r: ((abs(dx) < r / 3) & (abs(dy) < r)) |
                      ((abs(dy) < r / 3) & (abs(dx) < r)),         # cross
    lambda dy, dx, r: (abs(dy) < 0.4 * r) & (abs(dx) < r),         # bar
    lambda dy, dx, r: (abs(dx) < 0.4 * r) & (abs(dy) < r),         # column
    lambda dy, dx, r: (dy / 0.5)**2 + dx**2 < r**2,                # ellipse
    lambda dy, dx, r: ((dy**2 + (dx - r / 2)**2) < (r / 2.5)**2) |
                      ((dy**2 + (dx + r / 2)**2) < (r / 2.5)**2),  # two dots
)


def synthetic_image(class_id: int, rng: np.random.Generator,
                    res: int = 32) -> np.ndarray:
  """One uint8 [res, res, 3] image of class `class_id`'s shape.

  Position, size, hue (around a per-class hue) and the background gradient
  vary with `rng`.
  """
  yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / (res - 1)
  bg_top = rng.uniform(0.0, 0.5, 3)
  bg_bottom = rng.uniform(0.0, 0.5, 3)
  img = bg_top + (bg_bottom - bg_top) * yy[..., None]
  cy, cx = rng.uniform(0.35, 0.65, 2)
  r = rng.uniform(0.2, 0.32)
  hue = (class_id / len(_SHAPES) + rng.uniform(-0.04, 0.04)) % 1.0
  colour = np.asarray(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0),
                                          rng.uniform(0.7, 1.0)))
  mask = _SHAPES[class_id % len(_SHAPES)](yy - cy, xx - cx, r)
  img = np.where(mask[..., None], colour, img)
  return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_synthetic(split: str, class_ids: Sequence[int], per_class: int,
                   res: int = 32, seed: int = 0) -> ArraySource:
  """`per_class` procedural images per class (a fifth of it for "test").

  Deterministic given (split, class, index, seed); train and test use
  different seeds.
  """
  n = per_class if split == "train" else max(1, per_class // 5)
  images, labels = [], []
  for cid in class_ids:
    for i in range(n):
      rng = np.random.default_rng(
          [seed, pipeline.SPLITS.index(split), cid, i])
      images.append(synthetic_image(cid, rng, res))
      labels.append(cid)
  return ArraySource(np.stack(images), np.asarray(labels, np.int32))


def resolve_source(data_cfg: ml_collections.ConfigDict) -> str:
  """The concrete source ("folder", "tfds", "synthetic") for a data config."""
  source = data_cfg.get("source", "auto")
  if source not in SOURCES:
    raise ValueError(f"Unknown config.data.source {source!r}; valid: "
                     f"{', '.join(SOURCES)}.")
  if source != "auto":
    return source
  if data_cfg.get("root", ""):
    return "folder"
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    prepared = tfds.builder(
        "cifar10", data_dir=data_cfg.get("tfds_data_dir", "") or None
    ).is_prepared()
  except ImportError:
    prepared = False
  if prepared:
    return "tfds"
  raise FileNotFoundError(
      "config.data.source='auto' found no CIFAR-10: config.data.root is "
      "empty and TFDS cifar10 is not prepared.\n" + how_to_get_data())


def load(data_cfg: ml_collections.ConfigDict, split: str,
         source: Optional[str] = None) -> ArraySource:
  """The split's ArraySource as selected by `data_cfg` (see module doc).

  Args:
    data_cfg: `config.data`.
    split: "train" or "test".
    source: the resolved source; `resolve_source(data_cfg)` if None.

  Returns:
    An ArraySource.
  """
  class_ids = resolve_classes(data_cfg.get("classes", "cat,dog"))
  res = data_cfg.get("res", 32)
  source = source or resolve_source(data_cfg)
  if source == "folder":
    return load_folder(data_cfg.root, split, class_ids, res)
  if source == "tfds":
    return load_tfds(split, class_ids, data_cfg.get("tfds_data_dir", ""), res)
  return load_synthetic(split, class_ids, data_cfg.get("per_class", 500),
                        res, data_cfg.get("seed", 0))


def flip_augment(elem: Dict[str, np.ndarray],
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
  """Horizontal flip with probability 1/2."""
  if rng.random() < 0.5:
    elem = dict(elem, image=np.ascontiguousarray(elem["image"][:, ::-1]))
  return elem


@pipeline.register("cifar")
def build(data_cfg: ml_collections.ConfigDict, split: str
          ) -> pipeline.Dataset:
  """CIFAR-10 classes from `data.source`; flips train images if `data.flip`.

  Args:
    data_cfg: `config.data` with source, root, classes, res, flip and, for
      the synthetic source, per_class and seed.
    split: "train" or "test".

  Returns:
    A pipeline.Dataset of {"image": float32 [res, res, 3] in [0, 1],
    "label": int32 CIFAR-10 id}.
  """
  source = resolve_source(data_cfg)
  class_ids = resolve_classes(data_cfg.get("classes", "cat,dog"))
  augment = (flip_augment if split == "train" and data_cfg.get("flip", False)
             else None)
  return pipeline.Dataset(
      load(data_cfg, split, source), augment,
      info=dict(channels=3, source=source,
                classes=[CLASS_NAMES[c] for c in class_ids]))
