"""The small interface between the shared train loop and a model family.

The loop (jaxgen/train.py) knows only this: build a state, run a pure train
step, prepare the state for evaluation once, run an eval step, draw samples.
Each family owns its models, losses, optimizers and (for GANs) its
generator/discriminator alternation; the plumbing that GAN families share
lives in jaxgen/tasks/gan_base.py.

A task builds its modules from the config in its constructor and keeps no
other state: `init_state` is a pure function of (rng, config), so a
checkpoint can be restored onto `jax.eval_shape(task.init_state, rng)`
without running any initialiser or reading any data.
"""

import abc
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from flax.training import train_state

Batch = Dict[str, jax.Array]
Metrics = Dict[str, jax.Array]

DTYPES = ("auto", "float32", "bfloat16")


def resolve_dtype(name: str):
  """`model.dtype` -> compute dtype: "auto" is bfloat16 on GPU/TPU, else f32.

  Args:
    name: "auto", "float32" or "bfloat16".

  Returns:
    A jnp dtype.

  Raises:
    ValueError: for an unknown name.
  """
  if name == "auto":
    return jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
  if name not in DTYPES:
    raise ValueError(f"Unknown model.dtype {name!r}; valid: {DTYPES}.")
  return jnp.dtype(name)


def rbg_key(key):
  """A key of the "rbg" PRNG (XLA's RngBitGenerator) derived from `key`.

  Used for parameter initialisation and dropout masks: XLA:CPU compiles
  threefry bit generation slowly (about 20 s for a tiny U-Net's
  initialisers on a 2-core CPU, 2.5 s with rbg), and these random bits need
  no cross-version reproducibility beyond the run itself.

  Args:
    key: a typed or raw threefry key.

  Returns:
    A typed "rbg" key.
  """
  return jax.random.wrap_key_data(
      jax.random.bits(key, (4,), jnp.uint32), impl="rbg")


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

  def example_batch(self, num: int = 2) -> Batch:
    """Zeros shaped like `num` model inputs, from the config alone.

    Used to initialise parameters (so that `init_state` needs no data) and
    by the loop to check that the data matches the configured shapes.
    """
    raise NotImplementedError(
        f"{type(self).__name__} does not describe its inputs.")

  @abc.abstractmethod
  def init_state(self, rng: jax.Array, batch: Optional[Batch] = None) -> Any:
    """Builds parameters and optimizer states.

    Args:
      rng: PRNG key.
      batch: ignored beyond its presence; shapes come from the config
        (`example_batch`), so that `jax.eval_shape(task.init_state, rng)`
        gives the abstract state of a stored run.

    Returns:
      The task's state pytree (with an integer `step`).
    """

  def load_pretrained(self, state):
    """`state` with the pretrained weights the config names put in.

    The train loop calls this on a fresh start only (not on a resume, and
    `jaxgen.run.load` never does): a stored run carries those weights in
    its own checkpoint, so loading it needs nothing else.

    Args:
      state: a fresh `init_state` result (placed on the mesh).

    Returns:
      The state, unchanged by default.
    """
    return state

  @abc.abstractmethod
  def train_step(self, state, batch: Batch, rng: jax.Array
                 ) -> Tuple[Any, Metrics]:
    """One optimisation step -> (new state, scalar metrics).

    `rng` is already folded with the step by the loop.
    """

  @abc.abstractmethod
  def eval_step(self, state, batch: Batch, rng: jax.Array) -> Metrics:
    """Per-example metrics, each of shape [batch] (the loop masks padding)."""

  def eval_state(self, state):
    """`state` prepared once for many `eval_step`, `samples` and `generate`
    calls, which give the same results on it as on `state`.

    The loop, `jaxgen.run.Run.generate`, jaxgen.compare and jaxgen.evaluate
    call it once per evaluation or set of generated images, so work that
    depends on the state alone is not repeated per batch (e.g.
    jaxgen/tasks/gan.py's recalibrated sampling generator).

    Args:
      state: the task's state.

    Returns:
      The prepared state; `state` itself by default.
    """
    return state

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

  def translations(self) -> Dict[str, Tuple[Any, Any]]:
    """Every direction a translation task evaluates, by name.

    Returns:
      {direction: (translate_batch(state, batch, rng), targets(batch))},
      images in [0, 1]; "" names the single direction of a one-way task.
      Empty for tasks that do not translate.
    """
    if type(self).translate_batch is Task.translate_batch:
      return {}
    return {"": (self.translate_batch, self.paired_targets)}

  def input_shape(self, direction: str = "") -> Tuple[int, int, int]:
    """(height, width, channels) of the images `translate` takes.

    Args:
      direction: one of `translations()`.

    Returns:
      The shape of one input image (the model's resolution and channels).
    """
    raise NotImplementedError(f"{type(self).__name__} does not translate.")

  def grid_columns(self, name: str) -> int:
    """Columns of the sample grid named `name` (8 by default)."""
    del name
    return 8


def generates(task: Task) -> bool:
  """Whether the task implements `generate` (new images from noise)."""
  # Looked up on the class: the base method raises NotImplementedError.
  return type(task).generate is not Task.generate


def to_signed(x):
  """[0, 1] -> [-1, 1]."""
  return x * 2.0 - 1.0


def to_unit(x):
  """[-1, 1] -> [0, 1], clipped."""
  return jnp.clip((x + 1.0) * 0.5, 0.0, 1.0)


def check_example(task: "Task", example: Batch, fields: Dict[str, str]):
  """Raises a ValueError if the data's channels differ from the config's.

  Args:
    task: the task (its `example_batch` gives the configured shapes).
    example: a batch of real data.
    fields: batch key -> the config field that sets its channels, for the
      message.
  """
  want = task.example_batch(1)
  for key, spec in want.items():
    if key in example and spec.ndim == 4:
      got = example[key].shape[-1]
      if got != spec.shape[-1]:
        raise ValueError(
            f"The data's {key!r} images have {got} channel(s) but the model "
            f"is configured for {spec.shape[-1]} "
            f"({fields.get(key, 'config.data')}); set it to {got} or convert "
            "the data.")


def to_channels(x, channels: int):
  """[..., c] -> [..., channels]: luma (ITU-R 601) or repeated grey.

  Args:
    x: images with 1 or 3 (or more; the first 3 are used) channels.
    channels: 1 or 3.

  Returns:
    `x` itself when it already has `channels`, else the converted images.
  """
  if x.shape[-1] == channels:
    return x
  if channels == 1:
    w = jnp.asarray([0.299, 0.587, 0.114], x.dtype)
    return jnp.sum(x[..., :3] * w, axis=-1, keepdims=True)
  return jnp.repeat(x[..., :1], channels, axis=-1)


def interleave(columns):
  """[k x [n, ...]] -> [n * k, ...] so that each grid row is one example."""
  return jnp.stack(columns, axis=1).reshape((-1,) + columns[0].shape[1:])
