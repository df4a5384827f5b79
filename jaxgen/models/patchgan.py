"""PatchGAN discriminator (pix2pix): one real/fake logit per image patch.

The input is the channel concatenation of the condition (the sketch, plus
label channels when label-conditioned) and the image, so the discriminator
judges pairs; with `condition=None` it judges images alone (CycleGAN).
Layout for `n_layers` = n (pix2pix's NLayerDiscriminator):

  n x [DownConv 4x4 s2, norm (not the first), LeakyReLU(0.2)]
  Conv 4x4 s1 p1, norm, LeakyReLU(0.2)
  Conv 4x4 s1 p1 -> 1 channel of logits

`norm` is "batch" (pix2pix), "instance" (CycleGAN) or "none"; as in the
reference, convolutions followed by BatchNorm have no bias, others do.

Each logit sees a `receptive_field(n)` square of the input: 70x70 for
n = 3 (the "70x70 PatchGAN"), 34 for 2, 142 for 4.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models import unet

_KERNEL = 4


def _layer_strides(n_layers: int):
  return [2] * n_layers + [1, 1]


def receptive_field(n_layers: int) -> int:
  """Side of the input square that one output logit depends on.

  Walking back from one output pixel, a layer with kernel k and stride s
  grows the field r to r * s + (k - s).

  Args:
    n_layers: stride-2 blocks of the PatchGAN.

  Returns:
    The receptive field in input pixels.
  """
  r = 1
  for s in reversed(_layer_strides(n_layers)):
    r = r * s + (_KERNEL - s)
  return r


def output_size(size: int, n_layers: int) -> int:
  """Logit map side for an input side `size` (stride-2 halves, s1 loses 1)."""
  for s in _layer_strides(n_layers):
    size = (size - 2) // 2 + 1 if s == 2 else size - 1
  return size


class PatchGAN(nn.Module):
  """(condition or None, image[, label]) -> patch logits [b, h', w'] (f32).

  Attributes:
    width: channels of the first block; doubles per block.
    max_width: cap on the channels (pix2pix: 8 * width).
    n_layers: stride-2 blocks (3 gives the 70x70 PatchGAN).
    num_classes: > 0 adds label channels to the input.
    label_dim: channels of the label embedding.
    norm: "batch", "instance" or "none".
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32).
  """
  width: int = 64
  max_width: int = 512
  n_layers: int = 3
  num_classes: int = 0
  label_dim: int = 8
  norm: str = "batch"
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, condition, image, label=None, train: bool = True):
    if condition is not None and condition.shape[:3] != image.shape[:3]:
      raise ValueError(f"Condition {condition.shape} and image {image.shape} "
                       "differ in batch or spatial size.")
    out = output_size(min(image.shape[1:3]), self.n_layers)
    if out < 1:
      raise ValueError(
          f"A {self.n_layers}-layer PatchGAN (receptive field "
          f"{receptive_field(self.n_layers)}) needs larger inputs than "
          f"{image.shape[1]}x{image.shape[2]}; lower model.n_layers.")
    dtype = self.dtype or image.dtype
    x = image.astype(dtype)
    if condition is not None:
      x = jnp.concatenate([condition.astype(dtype), x], -1)
    x = unet.append_label(self, x, label, self.dtype)
    norm = layers.make_norm(self.norm, train, self.dtype)
    bias = self.norm != "batch"
    for i in range(self.n_layers):
      x = layers.DownConv(unet.level_width(self.width, self.max_width, i),
                          use_bias=i == 0 or bias, impl=self.downsample_impl,
                          dtype=self.dtype)(x)
      if i:
        x = norm()(x)
      x = nn.leaky_relu(x, 0.2)
    pad = ((1, 1), (1, 1))
    x = nn.Conv(unet.level_width(self.width, self.max_width, self.n_layers),
                (_KERNEL, _KERNEL), padding=pad, use_bias=bias,
                dtype=self.dtype)(x)
    x = nn.leaky_relu(norm()(x), 0.2)
    x = nn.Conv(1, (_KERNEL, _KERNEL), padding=pad, dtype=self.dtype)(x)
    return x[..., 0].astype(jnp.float32)
