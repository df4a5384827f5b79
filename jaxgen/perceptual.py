"""Perceptual loss on early FID-Inception features (translation GANs).

Options of `config.gan` read by the translation families (cgan, cyclegan):

  perceptual_weight  weight of the term in the generator loss; 0 = off.
  perceptual_layers  comma-separated stem layers of the FID InceptionV3
                     (jaxgen/evaluation/inception.py) whose outputs are
                     compared; default `DEFAULT_LAYERS`.

The term is the mean over the chosen layers of the mean absolute difference
between the features of a generated image and of its target (pix2pix:
G(sketch) vs the photo; CycleGAN: each cycle reconstruction vs its input).

Feature network: the stem of the repository's FID Inception port (the
convolutions before the first Mixed block; `inception.stem` builds them for
both), with the same converted weights as FID (jaxgen/evaluation/weights.py:
$JAXGEN_INCEPTION_WEIGHTS or the converted cache, never downloaded). Layers
(channels, resolution, receptive field):

  Conv2d_1a_3x3   32 ch, 1/2, 3 px     Conv2d_3b_1x1   80 ch, 1/4, 15 px
  Conv2d_2a_3x3   32 ch, 1/2, 7 px     Conv2d_4a_3x3  192 ch, 1/4, 23 px
  Conv2d_2b_3x3   64 ch, 1/2, 11 px

The default pair, Conv2d_2b_3x3 (end of the half-resolution stage: edges and
strokes) and Conv2d_4a_3x3 (end of the stem: local texture), covers fine and
mid-scale structure, which is what a translation's L1 term misses (L1 only
measures per-pixel intensity); the Mixed blocks encode ImageNet semantics
rather than appearance, cost most of the network's 24M weights and need
inputs of 75 px or more. Stem weights: 172k floats (0.7 MB); cost about
2 GFLOP per 256 px image forward. Images are compared at their native size
(no resize to 299): every chosen map must keep >= 1 px, so the default needs
crops of at least 19 px (`min_size`); smaller images are a clear error.

Inputs are NHWC in [-1, 1] (the tasks' scale) with 1 or 3 channels (grey is
repeated to RGB), mapped to the port's "tf" normalisation ((x255 - 128) /
128). The weights are frozen: they live outside the TrainState, are closed
over by the jitted step as constants and sit behind stop_gradient, so
gradients reach only the images.
"""

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxgen.evaluation import inception
from jaxgen.evaluation import weights as weights_lib

Array = jax.Array

LAYERS = tuple(name for name, features, *_ in inception.STEM if features)
DEFAULT_LAYERS = "Conv2d_2b_3x3,Conv2d_4a_3x3"
_FIELD = "gan.perceptual_layers"


def parse_layers(layers: Union[str, Sequence[str]]) -> Tuple[str, ...]:
  """Validates layer names; returns them unique, in network order.

  Args:
    layers: a comma-separated string or a sequence of `LAYERS` names.

  Returns:
    The layers as a tuple in the order the network computes them.

  Raises:
    ValueError: for an empty selection or an unknown name.
  """
  names = ([n.strip() for n in layers.split(",") if n.strip()]
           if isinstance(layers, str) else list(layers))
  unknown = [n for n in names if n not in LAYERS]
  if unknown or not names:
    raise ValueError(f"Bad {_FIELD} {layers!r}: give one or more of "
                     f"{', '.join(LAYERS)} (comma-separated).")
  return tuple(n for n in LAYERS if n in names)


def _output_size(size: int, last: str) -> int:
  """Side of layer `last`'s map for a `size`-px input (< 1: too small)."""
  for name, _, kernel, stride, pad in inception.STEM:
    if size + 2 * pad < kernel:
      return 0
    size = (size + 2 * pad - kernel) // stride + 1
    if name == last:
      return size
  raise ValueError(f"Unknown stem layer {last!r}.")


def min_size(layers: Union[str, Sequence[str]]) -> int:
  """Smallest image side for which every chosen feature map has >= 1 px."""
  last = parse_layers(layers)[-1]
  size = 1
  while _output_size(size, last) < 1:
    size += 1
  return size


def check_size(height: int, width: int, layers) -> None:
  """Raises a ValueError naming the minimum when an image is too small."""
  need = min_size(layers)
  if min(height, width) < need:
    raise ValueError(
        f"Images of {height}x{width} px are too small for {_FIELD} "
        f"{','.join(parse_layers(layers))}: those feature maps need at least "
        f"{need} px per side. Use larger crops or earlier layers "
        f"(Conv2d_2b_3x3 needs {min_size('Conv2d_2b_3x3')} px).")


class StemFeatures(nn.Module):
  """The Inception stem up to the deepest of `layers`; returns those maps."""

  layers: Tuple[str, ...]

  @nn.compact
  def __call__(self, x: Array) -> Dict[str, Array]:
    out = inception.stem(x, last=self.layers[-1])
    return {name: out[name] for name in self.layers}


def to_inception_input(x: Array) -> Array:
  """[-1, 1] NHWC images with 1 or 3 channels -> the port's 'tf' input."""
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  elif x.shape[-1] != 3:
    raise ValueError(f"Perceptual features need 1 or 3 channels, got "
                     f"{x.shape[-1]}.")
  x255 = (x.astype(jnp.float32) + 1.0) * 127.5
  return (x255 - 128.0) / 128.0


def init_params(rng: Array, layers) -> Dict[str, Any]:
  """Randomly initialised feature weights (tests, or runs without weights).

  Args:
    rng: a PRNG key.
    layers: see `parse_layers`.

  Returns:
    `{'params': ...}` for `StemFeatures`, shaped like `load_params`'s.
  """
  layers = parse_layers(layers)
  size = min_size(layers)
  return StemFeatures(layers).init(rng, jnp.zeros((1, size, size, 3)))


def features(params, x: Array, layers) -> Dict[str, Array]:
  """Frozen early-Inception features of [-1, 1] images.

  Args:
    params: `{'params': ...}` from `load_params` or `init_params` (may hold
      more layers than asked for).
    x: [N, H, W, 1 or 3] images in [-1, 1], H and W >= `min_size(layers)`.
    layers: see `parse_layers`.

  Returns:
    {layer name: [N, h, w, c] float32 features}.
  """
  layers = parse_layers(layers)
  check_size(x.shape[1], x.shape[2], layers)
  return StemFeatures(layers).apply(jax.lax.stop_gradient(params),
                                    to_inception_input(x))


def perceptual_loss(params, x: Array, y: Array, layers) -> Array:
  """Mean over `layers` of the mean |features(x) - features(y)|.

  Args:
    params: feature weights (see `features`).
    x: generated images, [N, H, W, C] in [-1, 1].
    y: their targets, the same shape.
    layers: see `parse_layers`.

  Returns:
    A float32 scalar; gradients flow to `x` and `y` only.
  """
  n = x.shape[0]
  # One pass over both sets: a single convolution per layer.
  feats = features(params, jnp.concatenate(
      [x.astype(jnp.float32), y.astype(jnp.float32)]), layers)
  dists = [jnp.mean(jnp.abs(f[:n] - f[n:])) for f in feats.values()]
  return jnp.mean(jnp.stack(dists))


def load_params(layers, path: Optional[weights_lib.PathLike] = None):
  """The frozen stem weights needed for `layers`, BatchNorm folded.

  Args:
    layers: see `parse_layers`.
    path: weights file; default $JAXGEN_INCEPTION_WEIGHTS, else the cache
      (see `weights.resolve_weights_path`).

  Returns:
    `{'params': ...}` holding only the stem convolutions up to the deepest
    chosen layer.

  Raises:
    weights.WeightsNotFoundError: naming $JAXGEN_INCEPTION_WEIGHTS and the
      README section on evaluation weights.
  """
  layers = parse_layers(layers)
  needed = LAYERS[:LAYERS.index(layers[-1]) + 1]
  try:
    npz = weights_lib.resolve_weights_path(path)
  except weights_lib.WeightsNotFoundError as e:
    raise weights_lib.WeightsNotFoundError(
        f"gan.perceptual_weight > 0 needs the FID Inception weights: set "
        f"${weights_lib.ENV_WEIGHTS} to a weights file (README, section "
        f"'Evaluation').\n{e}") from None
  with np.load(npz) as data:  # Read only the few stem arrays.
    canonical = {k: data[k] for k in data.files if k.split("/")[0] in needed}
  params, _ = inception.params_from_weights(canonical)
  return params


class PerceptualTerm:
  """A task's perceptual term: `weight * distance(generated, target)`.

  The feature weights are read on first use (when a training step is
  traced, or by `load`), not when the task is built: a trained run loads
  and translates on a machine without them.
  """

  def __init__(self, weight: float, layers: Tuple[str, ...], params=None):
    self.weight = weight
    self.layers = layers
    self._params = params

  @property
  def params(self) -> Any:
    """The feature weights (`load_params`), read once."""
    self.load()
    return self._params

  def load(self) -> None:
    """Reads the weights unless read (a fresh start fails before training).

    Raises:
      weights.WeightsNotFoundError: naming $JAXGEN_INCEPTION_WEIGHTS.
    """
    if self._params is None:
      self._params = load_params(self.layers)

  def distance(self, x: Array, y: Array) -> Array:
    """Per-example feature distance of `x` from `y`."""
    return perceptual_loss(self.params, x, y, self.layers)


def from_config(gan_cfg: ml_collections.ConfigDict, image_size: int,
                params=None) -> Optional[PerceptualTerm]:
  """The perceptual term of `config.gan`, or None when it is off.

  Args:
    gan_cfg: `config.gan` (perceptual_weight, perceptual_layers; stored
      configs without them mean off).
    image_size: side of the images the term compares (the training crop).
    params: feature weights to use instead of loading them (tests).

  Returns:
    A PerceptualTerm, or None for perceptual_weight == 0.

  Raises:
    ValueError: for a negative weight, bad layers or too small images.
  """
  weight = float(gan_cfg.get("perceptual_weight", 0.0))
  if weight < 0:
    raise ValueError(f"gan.perceptual_weight must be >= 0 (0 = off), got "
                     f"{weight}.")
  if weight == 0:
    return None
  layers = parse_layers(gan_cfg.get("perceptual_layers", DEFAULT_LAYERS))
  check_size(image_size, image_size, layers)
  return PerceptualTerm(weight, layers, params)
