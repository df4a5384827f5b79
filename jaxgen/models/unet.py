"""Generators for image-to-image translation (pix2pix, Isola et al. 2017).

`UNet`: the pix2pix U-Net. `depth` stride-2 encoder blocks take the input
down to 1x1 (log2(res) levels: 8 at 256 px, 7 at 128, 6 at 64) and the
decoder mirrors them, concatenating each encoder output to the decoder
input at the same resolution (the skip connections):

  encoder  e0 = LReLU(DownConv(x))                     (no norm: first)
           ei = LReLU(BN(DownConv(e{i-1})))            (0 < i < depth-1)
           e{depth-1} = LReLU(DownConv(e{depth-2}))    (no norm: 1x1)
  decoder  d = ReLU([Dropout](BN(UpConv(d))))  then  d = concat(d, skip)
           out = tanh(UpConv(d))

Dropout (0.5) sits in the `num_dropout` decoder blocks just outside the
innermost one, as in pix2pix, where it is the only source of noise.

`EncoderGenerator`: the two-branch alternative without skips: a sketch
encoder to a `code_dim` vector, concatenated with noise z and decoded to the
image.

Both take an optional integer class label, embedded and broadcast as extra
input channels (`LabelChannels`). With `label_injection="projection"`
(`model.label_injection`; the discriminator is then a projection PatchGAN)
the decoder is label-conditioned as well: every decoder normalisation layer
is followed by a per-class scale and shift (`normalization.ClassFiLM`,
conditional batch norm; identity at init), so the label reaches every
resolution instead of only the input, where the bottleneck can drop it.
Parameters stay float32 (`param_dtype`); `dtype` sets the compute precision
(bfloat16 for mixed precision) and the output is float32 in [-1, 1].
"""

import math
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models import normalization

LABEL_INJECTIONS = ("concat", "projection")


def unet_depth(res: int) -> int:
  """Levels that take a `res` x `res` input down to 1x1: log2(res).

  Args:
    res: side of the (square) input, a power of two >= 4.

  Returns:
    The number of stride-2 encoder blocks.

  Raises:
    ValueError: if `res` is not a power of two >= 4.
  """
  if res < 4 or res & (res - 1):
    raise ValueError(f"The U-Net needs a power-of-two resolution >= 4 (its "
                     f"bottleneck is 1x1), got {res}; set "
                     "config.data.crop_size to e.g. 64, 128 or 256.")
  return int(math.log2(res))


def level_width(width: int, max_width: int, level: int) -> int:
  """Channels at encoder `level`: width * 2**level, capped at max_width."""
  return min(width * 2 ** level, max_width)


class LabelChannels(nn.Module):
  """Appends a learned class embedding to `x` as constant extra channels.

  Attributes:
    num_classes: number of classes.
    features: embedding size (extra channels).
    dtype: compute dtype of the embedding.
  """
  num_classes: int
  features: int
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x, label):
    emb = nn.Embed(self.num_classes, self.features, dtype=self.dtype)(
        label.astype(jnp.int32))
    emb = jnp.broadcast_to(emb[:, None, None, :].astype(x.dtype),
                           x.shape[:3] + (self.features,))
    return jnp.concatenate([x, emb], axis=-1)


def append_label(module, x, label, dtype):
  """Appends `LabelChannels` to `x` when `module.num_classes` > 0.

  Call from inside a compact method: the embedding becomes a submodule
  ("label_channels") of that module.

  Args:
    module: the calling module (has `num_classes` and `label_dim`).
    x: [b, h, w, c] input.
    label: [b] integer labels, or None for an unconditional module.
    dtype: compute dtype.

  Returns:
    x, with `label_dim` more channels when label-conditioned.
  """
  if module.num_classes:
    if label is None:
      raise ValueError(f"{type(module).__name__} has num_classes="
                       f"{module.num_classes} but got no label.")
    return LabelChannels(module.num_classes, module.label_dim, dtype=dtype,
                         name="label_channels")(x, label)
  return x


def check_label_injection(kind: str, num_classes: Optional[int] = None):
  """Raises a ValueError unless `kind` is one of LABEL_INJECTIONS.

  Args:
    kind: `model.label_injection`.
    num_classes: the data's classes, if known: "projection" needs some.
  """
  if kind not in LABEL_INJECTIONS:
    raise ValueError(f"Unknown model.label_injection {kind!r}; valid: "
                     f"{', '.join(LABEL_INJECTIONS)}.")
  if kind == "projection" and num_classes == 0:
    raise ValueError("model.label_injection='projection' needs labels "
                     "(data.num_classes > 0); use 'concat' otherwise.")


def label_film(module, x, label, name):
  """`ClassFiLM` of `x` for a "projection" model with labels, else `x`.

  Call from inside a compact method, after a decoder normalisation layer.

  Args:
    module: the calling generator (has `num_classes`, `label_injection`).
    x: [b, h, w, c] normalised features.
    label: [b] integer labels (None for an unconditional module).
    name: the submodule's name.

  Returns:
    x, scaled and shifted per class when label-conditioned by projection.
  """
  check_label_injection(module.label_injection)
  if not module.num_classes or module.label_injection != "projection":
    return x
  return normalization.ClassFiLM(module.num_classes, dtype=module.dtype,
                                 name=name)(x, label)


class UNet(nn.Module):
  """Sketch [b, res, res, Cin] (+ label) -> image [b, res, res, out] in [-1, 1].

  Attributes:
    out_channels: channels of the output image.
    depth: encoder blocks; 0 means `unet_depth(res)` (down to 1x1).
    width: channels of the first encoder block; doubles per level.
    max_width: cap on the channels.
    dropout: dropout rate of the inner decoder blocks.
    num_dropout: how many decoder blocks, counted outwards from the one
      after the innermost, use dropout (3 as in pix2pix).
    use_skips: False drops the skip connections (for ablations and tests).
    norm: "batch" (pix2pix), "instance" (CycleGAN's U-Net option) or
      "none"; convolutions before a BatchNorm have no bias, others do.
    num_classes: > 0 makes the generator label-conditioned.
    label_dim: channels of the label embedding.
    upsample_impl: UpConv implementation (None/'auto' = backend default).
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32).
    label_injection: "concat" (input channels only) or "projection" (also
      a `ClassFiLM` after each decoder norm, named "film<level>").
  """
  out_channels: int
  depth: int = 0
  width: int = 64
  max_width: int = 512
  dropout: float = 0.5
  num_dropout: int = 3
  use_skips: bool = True
  norm: str = "batch"
  num_classes: int = 0
  label_dim: int = 8
  upsample_impl: Optional[str] = None
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  label_injection: str = "concat"

  @nn.compact
  def __call__(self, x, label=None, z=None, train: bool = True):
    del z  # Dropout is the U-Net's noise, as in pix2pix.
    depth = self.depth or unet_depth(x.shape[1])
    if x.shape[1] % 2 ** depth or x.shape[2] % 2 ** depth:
      raise ValueError(f"Input {x.shape[1]}x{x.shape[2]} is not divisible by "
                       f"2**depth = {2 ** depth}.")
    norm = layers.make_norm(self.norm, train, self.dtype)
    bias = self.norm != "batch"
    x = append_label(self, x.astype(self.dtype or x.dtype), label, self.dtype)
    skips = []
    for i in range(depth):
      # No norm on the first block (raw input statistics) nor on the 1x1
      # bottleneck (BatchNorm of a single pixel per example is degenerate).
      plain = i == 0 or i == depth - 1
      x = layers.DownConv(level_width(self.width, self.max_width, i),
                          use_bias=plain or bias, impl=self.downsample_impl,
                          dtype=self.dtype, name=f"down{i}")(x)
      if not plain:
        x = norm()(x)
      x = nn.leaky_relu(x, 0.2)
      skips.append(x)
    skips.pop()  # The bottleneck itself is the decoder's input.
    for j, skip in enumerate(reversed(skips)):
      level = depth - 2 - j
      x = layers.UpConv(level_width(self.width, self.max_width, level),
                        use_bias=bias, impl=self.upsample_impl,
                        dtype=self.dtype, name=f"up{level + 1}")(x)
      x = label_film(self, norm()(x), label, f"film{level + 1}")
      if 1 <= j <= self.num_dropout and self.dropout > 0:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = nn.relu(x)
      if self.use_skips:
        x = jnp.concatenate([x, skip], axis=-1)
    x = layers.UpConv(self.out_channels, impl=self.upsample_impl,
                      dtype=self.dtype, name="up0")(x)
    return jnp.tanh(x.astype(jnp.float32))


class EncoderGenerator(nn.Module):
  """Two-branch generator: sketch encoder -> code, [code, z] -> image.

  The encoder (DownConv blocks down to 4x4, then a dense layer) maps the
  sketch to a `code_dim` vector; it is concatenated with the noise `z` and
  decoded DCGAN-style (dense to 4x4, UpConv blocks, tanh). There are no skip
  connections, so everything the decoder knows about the sketch passes
  through the code.

  Attributes:
    out_channels: channels of the output image.
    width: channels at the highest resolution; doubles per level.
    max_width: cap on the channels.
    code_dim: size of the sketch code (100 as in the issue).
    num_classes: > 0 makes the generator label-conditioned.
    label_dim: channels of the label embedding.
    upsample_impl: UpConv implementation.
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32).
    label_injection: "concat" or "projection" (as for `UNet`; the FiLMs
      follow the decoder's BatchNorms, "film<level>" and "film_project").
  """
  out_channels: int
  width: int = 64
  max_width: int = 512
  code_dim: int = 100
  num_classes: int = 0
  label_dim: int = 8
  upsample_impl: Optional[str] = None
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  label_injection: str = "concat"

  @nn.compact
  def __call__(self, x, label=None, z=None, train: bool = True):
    res = x.shape[1]
    levels = unet_depth(res) - 2  # Down to (and up from) 4x4.
    if levels < 1:
      raise ValueError(f"EncoderGenerator needs inputs of at least 8x8, got "
                       f"{res}.")
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                dtype=self.dtype)
    x = append_label(self, x.astype(self.dtype or x.dtype), label, self.dtype)
    for i in range(levels):
      x = layers.DownConv(level_width(self.width, self.max_width, i),
                          use_bias=i == 0, impl=self.downsample_impl,
                          dtype=self.dtype, name=f"down{i}")(x)
      if i:
        x = norm()(x)
      x = nn.leaky_relu(x, 0.2)
    code = nn.Dense(self.code_dim, dtype=self.dtype, name="code")(
        x.reshape(x.shape[0], -1))
    h = code if z is None else jnp.concatenate([code, z.astype(code.dtype)],
                                               axis=-1)
    top = level_width(self.width, self.max_width, levels - 1)
    h = nn.Dense(4 * 4 * top, use_bias=False, dtype=self.dtype,
                 name="project")(h)
    h = nn.relu(label_film(self, norm()(h.reshape(h.shape[0], 4, 4, top)),
                           label, "film_project"))
    for level in reversed(range(levels - 1)):
      h = layers.UpConv(level_width(self.width, self.max_width, level),
                        use_bias=False, impl=self.upsample_impl,
                        dtype=self.dtype, name=f"up{level + 1}")(h)
      h = nn.relu(label_film(self, norm()(h), label, f"film{level + 1}"))
    h = layers.UpConv(self.out_channels, impl=self.upsample_impl,
                      dtype=self.dtype, name="up0")(h)
    return jnp.tanh(h.astype(jnp.float32))
