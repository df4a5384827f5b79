"""Weight and label-conditioned normalisation for the GAN models.

  spectral           a layer, optionally wrapped in flax's `nn.SpectralNorm`
                     (Miyato et al. 2018): its weights are divided by their
                     largest singular value before the layer runs.
  normalized_params  the weights a spectrally normalised module uses, from
                     its params and its state (for inspection and tests).
  ClassFiLM          per-class scale and shift of a feature map (the affine
                     part of conditional batch norm), identity at init.

Spectral normalisation state. `nn.SpectralNorm` keeps, per normalised
weight, the power-iteration vector `u` and the last estimate `sigma` in the
"batch_stats" collection, next to any BatchNorm statistics, under the
wrapper's name: {"SpectralNorm_<i>": {"<layer>/kernel/u", ".../sigma"}}. The
tasks already keep "batch_stats" in `TrainState.batch_stats` (so the state
is checkpointed and restored) and apply their discriminators with
mutable=["batch_stats"] in training, where each call runs one power
iteration and stores it (update_stats=True); evaluation calls
(train=False) run one iteration from the stored `u` without storing it.
The layer's own parameters keep their names, so a model's params tree is
the same with and without normalisation. The wrapper normalises the stored
kernel before the layer reads it, so the kernel every up/down-sampling
lowering of jaxgen/models/layers.py receives is the normalised one; a
kernel [kh, kw, in, out] is normalised as the matrix [kh * kw * in, out].
One flax detail: `init` stores the weights already divided by the first
(one-iteration) estimate, a rescaled initialisation; what the layers compute
is the same, as normalisation ignores the weights' scale.
"""

import functools
from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax.numpy as jnp

Array = Any


def spectral(layer: nn.Module, enabled: bool, train: bool) -> Callable:
  """`layer`, spectrally normalised when `enabled`.

  Call from inside a compact method (the wrapper becomes a submodule of the
  caller, named "SpectralNorm_<i>"; the layer keeps its own name).

  Args:
    layer: an unbound layer with a weight matrix or kernel (Dense, Conv,
      DownConv, Embed, ...); biases (1-D) are left as they are.
    enabled: whether to normalise.
    train: whether to store this call's power iteration (training calls;
      the "batch_stats" collection must then be mutable).

  Returns:
    A callable with the layer's call signature.
  """
  if not enabled:
    return layer
  return functools.partial(nn.SpectralNorm(layer), update_stats=train)


def normalized_params(params, batch_stats):
  """The params with every spectrally normalised weight divided by `sigma`.

  These are the weights the last training call used (its stored `sigma`).

  Args:
    params: a model's "params" collection.
    batch_stats: its "batch_stats" collection (SpectralNorm state and any
      BatchNorm statistics), or None.

  Returns:
    A params tree of the same structure.
  """
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
  for path, value in flax.traverse_util.flatten_dict(
      flax.core.unfreeze(batch_stats or {})).items():
    if not path[-1].endswith("/sigma"):
      continue
    # The wrapper sits next to the layer: drop its name, then the entry
    # "<layer>/<param>/sigma" names the parameter relative to their parent.
    target = path[:-2] + tuple(path[-1].split("/")[:-1])
    sigma = jnp.where(value != 0, value, 1)
    flat[target] = flat[target] / sigma
  return flax.traverse_util.unflatten_dict(flat)


class ClassFiLM(nn.Module):
  """x -> x * scale[label] + shift[label], per channel (conditional norm).

  Placed after a normalisation layer it makes that layer class-conditional
  (conditional batch norm, de Vries et al. 2017; class-conditional FiLM):
  every class gets its own affine transform of the normalised features.
  Initialised to the identity (scale 1, shift 0), so a model starts out
  computing what it would without it.

  Attributes:
    num_classes: number of classes.
    dtype: compute dtype (the tables are float32).
  """
  num_classes: int
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x: Array, label: Array) -> Array:
    label = label.astype(jnp.int32)
    table = lambda name, init: nn.Embed(
        self.num_classes, x.shape[-1], dtype=self.dtype, embedding_init=init,
        name=name)(label)[:, None, None, :].astype(x.dtype)
    scale = table("scale", nn.initializers.ones)
    shift = table("shift", nn.initializers.zeros)
    return x * scale + shift


def one_hot_label(z: Array, num_classes: int) -> Optional[Array]:
  """The class of each code whose last `num_classes` entries are one-hot
  (the GAN generators' input), or None when `num_classes` is 0."""
  return jnp.argmax(z[:, -num_classes:], -1) if num_classes else None


def class_batch_norm(x: Array, label: Optional[Array], num_classes: int,
                     train: bool, momentum: float, dtype=None) -> Array:
  """BatchNorm, then a `ClassFiLM` of `label` when `num_classes` > 0.

  Call from inside a compact method: the layers are named in the caller's
  scope (BatchNorm_i, ClassFiLM_j), as if written there.

  Args:
    x: features [b, ..., c].
    label: [b] class indices (None without classes).
    num_classes: 0 for a plain BatchNorm.
    train: batch statistics (training) or the running averages.
    momentum: of the running averages.
    dtype: compute dtype.

  Returns:
    The normalised features, same shape.
  """
  x = nn.BatchNorm(use_running_average=not train, momentum=momentum,
                   dtype=dtype)(x)
  if num_classes:
    x = ClassFiLM(num_classes, dtype)(x, label)
  return x


# Normalisations of the gan and siamese_gan discriminators (`model.d_norm`).
D_NORMS = ("batch", "layer", "none")


def check_d_norm(norm: str) -> None:
  """Raises a ValueError unless `norm` is one of D_NORMS."""
  if norm not in D_NORMS:
    raise ValueError(f"Unknown discriminator norm {norm!r} (model.d_norm); "
                     f"valid: {', '.join(D_NORMS)}.")


def d_norm(x: Array, norm: str, train: bool, dtype=None) -> Array:
  """`norm` (one of D_NORMS) of a discriminator layer's output.

  Call from inside a compact method: the layer is named in the caller's
  scope (BatchNorm_i, LayerNorm_j), as if written there.

  Args:
    x: features [b, h, w, c].
    norm: "batch" (DCGAN's, batch statistics in training), "layer" (per
      example) or "none".
    train: training mode.
    dtype: compute dtype.

  Returns:
    The normalised features, same shape.
  """
  if norm == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                        dtype=dtype)(x)
  if norm == "layer":
    return nn.LayerNorm(dtype=dtype)(x)
  return x
