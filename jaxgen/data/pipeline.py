"""Input pipelines: named dataset builders and grain iterators over them.

Every dataset is a random-access source (grain's `RandomAccessDataSource`
protocol: `__len__` and `__getitem__` returning a dict of numpy arrays) plus
an optional per-element augmentation driven by a `np.random.Generator`.
Training batches come from a deterministic, seedable and checkpointable grain
iterator; evaluation batches are ordered, padded to full batches and masked.

A dataset is added by decorating a builder with `@register("name")`; the
builder takes (data config, split) and returns a `Dataset`.
"""

import dataclasses
import importlib
from typing import Any, Callable, Dict, Iterator, Optional

import grain
import jax
import ml_collections
import numpy as np

Element = Dict[str, np.ndarray]
RandomMap = Callable[[Element, np.random.Generator], Element]

SPLITS = ("train", "test")


@dataclasses.dataclass
class Dataset:
  """A source and how to augment its training elements.

  Attributes:
    source: random-access source of element dicts.
    augment: element, rng -> element, applied to training batches only.
    info: free-form facts about the data (e.g. number of writers).
  """
  source: Any
  augment: Optional[RandomMap] = None
  info: Dict[str, Any] = dataclasses.field(default_factory=dict)


_BUILDERS: Dict[str, Callable[[ml_collections.ConfigDict, str], Dataset]] = {}
# Builders living in modules with heavy imports are registered lazily: the
# name maps to the module that registers it on import.
_LAZY = {
    "synthetic_signatures": "jaxgen.data.signature_datasets",
    "signatures": "jaxgen.data.signature_datasets",
    "cifar": "jaxgen.data.cifar",
    "paired_folder": "jaxgen.data.paired_datasets",
    "procedural_faces": "jaxgen.data.paired_datasets",
    "sketchified_folder": "jaxgen.data.paired_datasets",
    "unpaired_folders": "jaxgen.data.unpaired",
    "unpaired_procedural": "jaxgen.data.unpaired",
}


def register(name: str):
  """Decorator registering a dataset builder under `name`."""
  def wrap(fn):
    _BUILDERS[name] = fn
    return fn
  return wrap


def known_datasets():
  """Sorted names of every dataset that can be built."""
  return sorted(set(_BUILDERS) | set(_LAZY))


def build(data_cfg: ml_collections.ConfigDict, split: str) -> Dataset:
  """Builds the named dataset's split.

  Args:
    data_cfg: `config.data`; `data_cfg.name` selects the builder.
    split: "train" or "test".

  Returns:
    A Dataset.

  Raises:
    ValueError: unknown dataset or split, with the valid names.
  """
  if split not in SPLITS:
    raise ValueError(f"Unknown split {split!r}; valid: {', '.join(SPLITS)}.")
  name = data_cfg.name
  if name not in _BUILDERS and name in _LAZY:
    importlib.import_module(_LAZY[name])
  if name not in _BUILDERS:
    raise ValueError(f"Unknown dataset {name!r} (config.data.name); known "
                     f"datasets: {', '.join(known_datasets())}.")
  return _BUILDERS[name](data_cfg, split)


def _per_process(batch_size: int) -> int:
  """Each process's rows of a global batch; a clear error if they differ.

  The loop checks the batch against the mesh's devices first
  (parallel.check_batch_size); the evaluators call eval_batches without a
  mesh, so the pipeline checks the processes itself.
  """
  count = jax.process_count()
  if batch_size % count:
    raise ValueError(f"Batch size {batch_size} is not divisible by the "
                     f"{count} processes.")
  return batch_size // count


def train_iterator(dataset: Dataset, batch_size: int, seed: int,
                   num_threads: int = 2, prefetch: int = 4):
  """An infinite, shuffled (reshuffled each epoch), augmented batch iterator.

  One global stream of examples (shuffle, repeat, augmentation, all seeded
  by `seed` and a function of the position only) is cut into global batches
  of `batch_size`; process p reads, loads and augments only rows
  [p * n, (p + 1) * n) of each, n = batch_size / process count. So the
  global batches are the same for any number of processes (a run on 2 hosts
  trains on exactly what a run on 1 does), and the iterator position, which
  counts batches, means the same on every process and for every process
  count. (grain's shard options split the source per process instead, which
  makes the batches depend on the process count.)

  The iterator supports `get_state()` / `set_state()`, so the position in the
  stream is saved with checkpoints and a resumed run sees the same batches.

  Args:
    dataset: the training Dataset.
    batch_size: global batch size; each process yields its share.
    seed: seeds the shuffle and the augmentation.
    num_threads: reader threads (0 = read in the calling thread).
    prefetch: batches prepared ahead.

  Returns:
    A grain DatasetIterator of element dicts with a leading batch dimension.
  """
  count = jax.process_count()
  per_process = _per_process(batch_size)
  if len(dataset.source) < batch_size:
    raise ValueError(
        f"The training split has {len(dataset.source)} examples, fewer than "
        f"one batch of {batch_size}; lower config.train.batch_size.")
  ds = grain.MapDataset.source(dataset.source).seed(seed)
  ds = ds.shuffle().repeat()
  if dataset.augment is not None:
    ds = ds.random_map(dataset.augment)
  # Row blocks of the global batches; block b * count + p is process p's
  # part of global batch b. Slicing is lazy: other blocks are never read.
  ds = ds.batch(per_process, drop_remainder=True)
  if count > 1:
    ds = ds[jax.process_index()::count]
  opts = grain.ReadOptions(num_threads=num_threads,
                           prefetch_buffer_size=prefetch if num_threads else 0)
  return iter(ds.to_iter_dataset(opts))


def eval_batches(dataset: Dataset, batch_size: int,
                 max_batches: int = -1) -> Iterator[Element]:
  """Ordered batches of the whole split, the last one padded and masked.

  Global batch b holds examples [b * batch_size, (b + 1) * batch_size) of
  the split; each process yields its rows of it (see `train_iterator`), so
  every process yields the same number of batches. Padding wraps around to
  the split's first examples (so set-level metrics see real images) and
  `batch["mask"]` is 0 for them, 1 otherwise.

  Args:
    dataset: the evaluation Dataset (no augmentation is applied).
    batch_size: global batch size.
    max_batches: stop after this many batches (-1 = all).

  Yields:
    Element dicts with a leading batch dimension (this process's rows) and a
    float32 "mask".
  """
  src = dataset.source
  n = len(src)
  if not n:
    raise ValueError("The evaluation split is empty.")
  per_process = _per_process(batch_size)
  offset = jax.process_index() * per_process
  num = -(-n // batch_size)
  if max_batches > 0:
    num = min(num, max_batches)
  for b in range(num):
    idx = b * batch_size + offset + np.arange(per_process)
    mask = (idx < n).astype(np.float32)
    elems = [src[int(i)] for i in idx % n]
    batch = {k: np.stack([e[k] for e in elems]) for k in elems[0]}
    batch["mask"] = mask
    yield batch


def first_batch(dataset: Dataset, batch_size: int) -> Element:
  """The first `batch_size` examples (no augmentation), for init and grids."""
  return next(eval_batches(dataset, batch_size, max_batches=1))


def spread_batch(dataset: Dataset, num: int) -> Element:
  """`num` examples evenly spaced over the split (no augmentation).

  Sample grids use this so they show many writers/classes rather than the
  first few examples, which often share one.

  Args:
    dataset: the Dataset to draw from.
    num: examples wanted (repeats wrap around when the split is smaller).

  Returns:
    An element dict with a leading dimension of `num`.
  """
  n = len(dataset.source)
  if not n:
    raise ValueError("Cannot draw samples from an empty split.")
  idx = np.linspace(0, n, num, endpoint=False).astype(int) % n
  elems = [dataset.source[int(i)] for i in idx]
  return {k: np.stack([e[k] for e in elems]) for k in elems[0]}
