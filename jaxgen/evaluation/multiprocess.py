"""FID statistics when a run spans several processes.

Each process computes Inception features of its own share of the images
(its rows of every test batch, or every P-th chunk of generated images), on
a local copy of the replicated state, so no process waits for another while
it works. The features are then all-gathered in the order one process would
have produced them (block b of process p after block b of process p - 1), so
FID and KID, whose subsets are drawn by position, equal those of a
single-process run. The reference statistics cache is read only when every
process has it, and written by process 0 only.

jaxgen.evaluation.in_training calls this when `jax.process_count() > 1`.
"""

from typing import Callable, Iterable, List

import jax
from jax.experimental import multihost_utils
import numpy as np

from jaxgen.evaluation import inception
from jaxgen.evaluation import statistics


def local_copy(tree):
  """This process's copy of a replicated pytree, on its first device.

  Jitted functions of the copy run on this process alone (no collectives),
  unlike those of the global arrays, which every process must call.

  Args:
    tree: a pytree of replicated global arrays.

  Returns:
    The same pytree of single-device arrays.
  """
  return jax.tree.map(
      lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def gather_blocks(blocks: List[np.ndarray]) -> np.ndarray:
  """Concatenates every process's blocks, block-major, process-minor.

  Args:
    blocks: this process's [n_i, ...] arrays; every process passes the same
      number of blocks with the same trailing shape (n_i may differ and be 0).

  Returns:
    The rows of block 0 of process 0, block 0 of process 1, ..., block 1 of
    process 0, ... as one array, on every process.
  """
  sizes = np.array([len(b) for b in blocks], np.int32)
  width = max(1, int(multihost_utils.process_allgather(sizes.max()).max()))
  padded = np.stack([np.concatenate(
      [b, np.zeros((width - len(b),) + b.shape[1:], b.dtype)]) for b in blocks])
  all_blocks = multihost_utils.process_allgather(padded)  # [P, B, width, ...]
  all_sizes = multihost_utils.process_allgather(sizes)  # [P, B]
  return np.concatenate([
      all_blocks[p, b, :all_sizes[p, b]]
      for b in range(all_blocks.shape[1]) for p in range(all_blocks.shape[0])])


def block_features(blocks: Iterable[np.ndarray], extractor,
                   value_range) -> List[np.ndarray]:
  """Pool features of each block of images ([0, n] rows each)."""
  out = []
  for images in blocks:
    images = np.asarray(images)
    if len(images):
      out.append(np.asarray(extractor(images, value_range)["pool"],
                            np.float32))
    else:
      out.append(np.zeros((0, inception.FEATURE_DIM), np.float32))
  return out


def from_features(pool: np.ndarray, extractor
                  ) -> statistics.InceptionStatistics:
  """Statistics (with features) of a feature matrix [n, d]."""
  moments = statistics.RunningMoments(pool.shape[1])
  moments.update(pool)
  return statistics.InceptionStatistics(
      mu=moments.mean.copy(), sigma=moments.covariance(),
      num_images=int(moments.count), features=pool, logits=None,
      resize_mode=extractor.resize_mode,
      normalization=extractor.normalization)


def gathered_statistics(blocks: Iterable[np.ndarray], extractor,
                        value_range) -> statistics.InceptionStatistics:
  """Statistics of every process's image blocks together."""
  return from_features(
      gather_blocks(block_features(blocks, extractor, value_range)),
      extractor)


def generated_blocks(generate: Callable, state, rng: jax.Array, num: int,
                     batch_size: int) -> Iterable[np.ndarray]:
  """This process's chunks of `num` generated images: chunk i (images
  [i * batch_size, ...), key fold_in(rng, i), as
  `in_training.generated_images`) for i = p, p + P, ...; one block per
  round, empty where the chunks run out."""
  chunks = -(-num // batch_size)
  count, index = jax.process_count(), jax.process_index()
  for first in range(0, chunks, count):
    i = first + index
    if i >= chunks:
      yield np.zeros((0,), np.float32)
      continue
    images = np.asarray(generate(state, jax.random.fold_in(rng, i),
                                 batch_size))
    yield images[:num - i * batch_size]


def cached_reference(path, compute: Callable[[], statistics
                                             .InceptionStatistics]
                     ) -> statistics.InceptionStatistics:
  """The statistics at `path` if every process has them, else `compute()`
  (collectively) and saved by process 0.

  Args:
    path: the cache file (see `statistics.reference_statistics_path`).
    compute: computes the statistics; called on every process or none.

  Returns:
    The statistics, with features.
  """
  have = path.is_file()
  if have:
    stats = statistics.load_statistics(path)
    have = stats.features is not None
  if bool(multihost_utils.process_allgather(np.array(have)).all()):
    return stats
  stats = compute()
  if jax.process_index() == 0:
    statistics.save_statistics(stats, path)
  return stats
