"""Data-parallel sharding over every device of the run with a `Mesh`.

The batch is split along a single "data" axis; parameters and optimizer state
are replicated. The same code runs on 1 CPU, several GPUs or a TPU slice.
"""

import collections
from typing import Any, Iterator, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over all (or the given) devices, axis name "data"."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) dimension over the mesh."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Raises a clear error if the global batch cannot be split evenly."""
  n = mesh.devices.size
  if batch_size % n:
    raise ValueError(
        f"Batch size {batch_size} is not divisible by the {n} devices of the "
        f"mesh; choose a multiple of {n} (e.g. --config.train.batch_size="
        f"{max(n, batch_size // n * n)}).")


def shard_batch(batch, mesh: Mesh):
  """Puts a host batch (this process's part) on the devices, split by batch.

  Args:
    batch: pytree of numpy arrays with the per-process batch leading.
    mesh: the device mesh.

  Returns:
    The same pytree of global `jax.Array`s sharded along the data axis.
  """
  sharding = data_sharding(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
      batch)


def replicate(tree, mesh: Mesh):
  """Places every leaf of `tree` on all devices of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def prefetch_to_mesh(iterator, mesh: Mesh, size: int = 2
                     ) -> Iterator[Tuple[Any, Any]]:
  """Global batches already on the devices while the current step runs.

  Args:
    iterator: host batch iterator with `get_state()` (a grain iterator).
    mesh: the device mesh.
    size: batches kept on the devices ahead of the consumer.

  Yields:
    (global batch, the iterator's state just after that batch): since the
    iterator runs `size` batches ahead, a checkpoint must store the state
    that comes with the last batch used, not `iterator.get_state()`.
  """
  queue = collections.deque()

  def put():
    host = next(iterator)
    queue.append((shard_batch(host, mesh), iterator.get_state()))

  for _ in range(size):
    put()
  while True:
    item = queue.popleft()
    put()  # Transfers run asynchronously, overlapping the step.
    yield item
