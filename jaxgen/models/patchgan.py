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

Options (all off by default; the params tree is then today's):

  spectral_norm    (`gan.d_spectral_norm`) every convolution kernel (and
                   the projection embedding) spectrally normalised
                   (jaxgen/models/normalization.py). `norm` stays as
                   configured: set it to "none" separately for the SN-GAN
                   discriminator without normalisation layers.
  label_injection  (`model.label_injection`, label-conditioned models)
                   "concat": the label embedding is appended to the input
                   as `label_dim` constant channels. "projection" (Miyato &
                   Koyama 2018, per patch): no label channels; each patch
                   logit gets + <embed(y), h>, h the last feature map before
                   the logit convolution averaged over that convolution's
                   4x4 window (zero padded, as the convolution reads it), so
                   the label enters as an inner product the discriminator
                   cannot ignore.
  MultiScalePatchGAN (`gan.d_scales` = k > 1, pix2pixHD): k PatchGANs of the
                   same architecture ("scale0", ...); the j-th judges the
                   input (condition and image) average-pooled j times by
                   `downsample`. It returns the list of the k logit maps
                   (the losses average over it); `discriminator` builds a
                   plain PatchGAN for k = 1.
"""

import dataclasses
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models import normalization
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


def downsample(x):
  """pix2pixHD's input pyramid step: 3x3 average pool, stride 2, padding 1.

  Border windows average only the pixels inside the image (PyTorch
  AvgPool2d(3, 2, 1, count_include_pad=False)). Output side ceil(side / 2).

  Args:
    x: [b, h, w, c].

  Returns:
    [b, ceil(h / 2), ceil(w / 2), c].
  """
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def scale_sizes(size: int, scales: int):
  """Input sides of the `scales` discriminators for a side-`size` input."""
  sizes = [size]
  for _ in range(scales - 1):
    sizes.append((sizes[-1] + 1) // 2)
  return sizes


def check_scales(size: int, n_layers: int, scales: int):
  """Raises a ValueError unless `scales` PatchGANs fit a side-`size` input.

  Args:
    size: input side (the crop size).
    n_layers: stride-2 blocks of each PatchGAN.
    scales: `gan.d_scales`.
  """
  if not isinstance(scales, int) or scales < 1:
    raise ValueError(f"gan.d_scales must be an integer >= 1, got {scales!r}.")
  sizes = scale_sizes(size, scales)
  if output_size(sizes[-1], n_layers) < 1:
    # Sides shrink with the scale: the ones that fit come first.
    fit = sum(output_size(s, n_layers) >= 1 for s in sizes)
    raise ValueError(
        f"gan.d_scales={scales} is too many for {size}x{size} inputs: the "
        f"last scale sees {sizes[-1]}x{sizes[-1]}, too small for a "
        f"{n_layers}-layer PatchGAN (model.n_layers); at most {fit} scale(s) "
        "fit.")


class PatchGAN(nn.Module):
  """(condition or None, image[, label]) -> patch logits [b, h', w'] (f32).

  Attributes:
    width: channels of the first block; doubles per block.
    max_width: cap on the channels (pix2pix: 8 * width).
    n_layers: stride-2 blocks (3 gives the 70x70 PatchGAN).
    num_classes: > 0 adds label channels to the input.
    label_dim: channels of the label embedding ("concat").
    norm: "batch", "instance" or "none".
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32).
    spectral_norm: spectrally normalise every weight (see module doc).
    label_injection: "concat" or "projection" (see module doc).
  """
  width: int = 64
  max_width: int = 512
  n_layers: int = 3
  num_classes: int = 0
  label_dim: int = 8
  norm: str = "batch"
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  spectral_norm: bool = False
  label_injection: str = "concat"

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
    unet.check_label_injection(self.label_injection)
    project = bool(self.num_classes) and self.label_injection == "projection"
    if project and label is None:
      raise ValueError(f"PatchGAN has num_classes={self.num_classes} but got "
                       "no label.")
    sn = lambda layer: normalization.spectral(layer, self.spectral_norm, train)
    dtype = self.dtype or image.dtype
    x = image.astype(dtype)
    if condition is not None:
      x = jnp.concatenate([condition.astype(dtype), x], -1)
    if not project:
      x = unet.append_label(self, x, label, self.dtype)
    norm = layers.make_norm(self.norm, train, self.dtype)
    bias = self.norm != "batch"
    for i in range(self.n_layers):
      x = sn(layers.DownConv(unet.level_width(self.width, self.max_width, i),
                             use_bias=i == 0 or bias,
                             impl=self.downsample_impl, dtype=self.dtype))(x)
      if i:
        x = norm()(x)
      x = nn.leaky_relu(x, 0.2)
    pad = ((1, 1), (1, 1))
    width = unet.level_width(self.width, self.max_width, self.n_layers)
    x = sn(nn.Conv(width, (_KERNEL, _KERNEL), padding=pad, use_bias=bias,
                   dtype=self.dtype))(x)
    h = nn.leaky_relu(norm()(x), 0.2)
    logits = sn(nn.Conv(1, (_KERNEL, _KERNEL), padding=pad,
                        dtype=self.dtype))(h)[..., 0].astype(jnp.float32)
    if project:
      # The logit convolution's 4x4 window of h, averaged: one feature
      # vector per patch logit.
      h = nn.avg_pool(h, (_KERNEL, _KERNEL), padding=pad).astype(jnp.float32)
      self.sow("intermediates", "projection_features", h)
      embed = sn(nn.Embed(self.num_classes, width,
                          embedding_init=nn.initializers.xavier_uniform(),
                          name="projection"))(label.astype(jnp.int32))
      logits = logits + jnp.einsum("bhwc,bc->bhw", h, embed)
    return logits


class MultiScalePatchGAN(PatchGAN):
  """`scales` PatchGANs on an input pyramid -> list of patch logit maps.

  Attributes:
    scales: number of discriminators (>= 2; see `discriminator`). The
      other attributes are PatchGAN's: every scale has that architecture
      and its own weights.
  """
  scales: int = 2

  @nn.compact
  def __call__(self, condition, image, label=None, train: bool = True):
    fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(
        PatchGAN) if f.init and f.name not in ("parent", "name")}
    outs = []
    for k in range(self.scales):
      if k:
        image = downsample(image)
        condition = None if condition is None else downsample(condition)
      outs.append(PatchGAN(**fields, name=f"scale{k}")(condition, image,
                                                        label, train))
    return outs


def discriminator(scales: int = 1, **kwargs) -> PatchGAN:
  """A PatchGAN (scales = 1) or a MultiScalePatchGAN with `scales` scales.

  Args:
    scales: `gan.d_scales`.
    **kwargs: PatchGAN attributes.

  Returns:
    The module: one logit map for 1 scale, a list of maps for more.
  """
  if scales == 1:
    return PatchGAN(**kwargs)
  return MultiScalePatchGAN(scales=scales, **kwargs)
