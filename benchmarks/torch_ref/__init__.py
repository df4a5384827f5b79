"""PyTorch references of jaxgen's train steps, used by benchmarks only.

Each module mirrors one task: the same architecture (layer for layer, the
same parameter shapes) and the same train step (losses, generator /
discriminator alternation, Adam settings), written as a PyTorch user would,
NCHW. torch is never a dependency of the package; only benchmarks/bench.py
and tests that skip without torch import these modules.

A reference module exposes `make(config, batch) -> Reference`, where
`config` is the task's full ml_collections config and `batch` the task's
batch as numpy arrays (NHWC images in [0, 1], int32 labels, no 'mask'). The
reference keeps that batch (converted once) and `step()` runs one complete
train step on it, returning a float loss (which also synchronises).
"""

import importlib
from typing import Protocol

# Task name (config.task) -> "module:function". A task without an entry is
# still benchmarked; its ratio column reads "n/a".
REFERENCES = {
    "vae": "benchmarks.torch_ref.vae:make",
    "gan": "benchmarks.torch_ref.gan:make",
    "classifier": "benchmarks.torch_ref.classifier:make",
    "cgan": "benchmarks.torch_ref.cgan:make",
    "siamese_gan": "benchmarks.torch_ref.siamese_gan:make",
    "cyclegan": "benchmarks.torch_ref.cyclegan:make",
}


class Reference(Protocol):
  """What `make` returns."""

  def step(self) -> float:
    """One full train step on the stored batch; returns a loss."""

  def parameters(self):
    """Every trainable torch parameter (generator and discriminator)."""


def has_reference(task: str) -> bool:
  """Whether a PyTorch reference exists for `task`."""
  return task in REFERENCES


def make(config, batch) -> Reference:
  """Builds the reference train step for `config.task` on `batch`.

  Args:
    config: the task's ml_collections config.
    batch: dict of numpy arrays as the task's train step receives them.

  Returns:
    A Reference.

  Raises:
    KeyError: if the task has no reference (see `has_reference`).
  """
  module, fn = REFERENCES[config.task].split(":")
  return getattr(importlib.import_module(module), fn)(config, batch)
