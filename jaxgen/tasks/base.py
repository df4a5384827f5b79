"""The small interface between the shared train loop and a model family.

The loop (jaxgen/train.py) knows only this: build a state, run a pure train
step, run an eval step, draw samples. Each family owns its models, losses,
optimizers and (for GANs) its generator/discriminator alternation.
"""

import abc
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
from flax.training import train_state

Batch = Dict[str, jax.Array]
Metrics = Dict[str, jax.Array]


class TrainState(train_state.TrainState):
  """Flax TrainState plus BatchNorm statistics (None when unused)."""
  batch_stats: Any = None

  def variables(self, params=None):
    """The `variables` dict for `module.apply`."""
    v = {"params": self.params if params is None else params}
    if self.batch_stats is not None:
      v["batch_stats"] = self.batch_stats
    return v


def create_train_state(module, variables, tx) -> TrainState:
  """A TrainState from `module.init` output and an optax transformation."""
  return TrainState.create(apply_fn=module.apply, params=variables["params"],
                           tx=tx, batch_stats=variables.get("batch_stats"))


class Task(abc.ABC):
  """A model family as the train loop sees it.

  A state is any pytree with an integer `step` attribute. Steps must be pure
  functions of their arguments so that the loop can jit them, donate the
  state and shard the batch.
  """

  def __init__(self, config):
    self.config = config

  @abc.abstractmethod
  def init_state(self, rng: jax.Array, batch: Batch) -> Any:
    """Builds parameters and optimizer states from an example batch."""

  @abc.abstractmethod
  def train_step(self, state, batch: Batch, rng: jax.Array
                 ) -> Tuple[Any, Metrics]:
    """One optimisation step -> (new state, scalar metrics).

    `rng` is already folded with the step by the loop.
    """

  @abc.abstractmethod
  def eval_step(self, state, batch: Batch, rng: jax.Array) -> Metrics:
    """Per-example metrics, each of shape [batch] (the loop masks padding)."""

  @abc.abstractmethod
  def samples(self, state, batch: Batch, rng: jax.Array
              ) -> Dict[str, jax.Array]:
    """Named image sets [n, h, w, c] in [0, 1] for sample grids.

    Called with the same fixed batch and rng every time, so that grids from
    different steps are comparable.
    """

  def generate(self, state, rng: jax.Array, num: int) -> jax.Array:
    """`num` new images in [0, 1] (for set-level metrics such as FID)."""
    raise NotImplementedError(f"{type(self).__name__} does not generate.")

  # Optional, for translation tasks: with both methods, python -m
  # jaxgen.evaluate reports L1/PSNR/SSIM on the test split (and FID of the
  # outputs against the targets).

  def translate_batch(self, state, batch: Batch, rng: jax.Array) -> jax.Array:
    """Outputs [n, h, w, c] in [0, 1] for the inputs of `batch` (jittable)."""
    raise NotImplementedError(f"{type(self).__name__} does not translate.")

  def paired_targets(self, batch: Batch) -> jax.Array:
    """Ground truth [n, h, w, c] in [0, 1] for `translate_batch(batch)`."""
    raise NotImplementedError(f"{type(self).__name__} has no paired targets.")

  def grid_columns(self, name: str) -> int:
    """Columns of the sample grid named `name` (8 by default)."""
    del name
    return 8


def to_signed(x):
  """[0, 1] -> [-1, 1]."""
  return x * 2.0 - 1.0


def to_unit(x):
  """[-1, 1] -> [0, 1], clipped."""
  return jnp.clip((x + 1.0) * 0.5, 0.0, 1.0)
