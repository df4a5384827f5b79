"""DCGAN generator and discriminator (Radford et al. 2016), any power-of-two
resolution >= 8 and any channel count.

Generator: z -> dense 4x4 -> [UpConv, BatchNorm, ReLU]* -> UpConv -> tanh.
Discriminator: [DownConv, (norm), LeakyReLU(0.2)]* -> dense -> logit.

The discriminator's `norm` (`model.d_norm`) is DCGAN's BatchNorm by
default, or per-example LayerNorm or none: a gradient penalty (WGAN-GP, R1)
is a per-example quantity that batch statistics couple across the batch,
so the WGAN-GP paper drops BatchNorm from its critic. `spectral_norm=True`
(`gan.d_spectral_norm`) spectrally normalises every DownConv kernel and the
dense layer's (jaxgen/models/normalization.py); the normalisation layers
are configured separately from it in every family.

`model.arch="resnet"` swaps both networks for residual ones of the same
interface (jaxgen/models/resgan.py): `generator` builds either generator,
and `Discriminator(arch=...)` either trunk under the same head.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models import normalization
from jaxgen.models import resgan
from jaxgen.models.vae import level_widths, num_levels

NORMS = normalization.D_NORMS


def down_blocks(x, widths, norm: str, spectral_norm: bool, train: bool,
                downsample_impl: Optional[str] = None, dtype=None):
  """[DownConv, (norm), LeakyReLU(0.2)] per width, inside a compact method.

  The layers are named in the calling module's scope (DownConv_i,
  BatchNorm_j, ...), as if written there: checkpoints of discriminators
  that spelt this loop out restore unchanged.

  Args:
    x: images [b, h, w, c].
    widths: output channels per block.
    norm: one of NORMS; the first block is never normalised (DCGAN).
    spectral_norm: spectrally normalise the convolution kernels.
    train: training mode (batch statistics, power iterations).
    downsample_impl: see layers.DownConv.
    dtype: compute dtype.

  Returns:
    The last block's activations [b, h / 2^k, w / 2^k, widths[-1]].

  Raises:
    ValueError: an unknown norm.
  """
  normalization.check_d_norm(norm)
  for i, w in enumerate(widths):
    # A bias where no normalisation follows (it would be subtracted).
    conv = layers.DownConv(w, use_bias=i == 0 or norm == "none",
                           impl=downsample_impl, dtype=dtype)
    x = normalization.spectral(conv, spectral_norm, train)(x)
    if i:
      x = normalization.d_norm(x, norm, train, dtype)
    x = nn.leaky_relu(x, 0.2)
  return x


class Generator(nn.Module):
  """z [batch, z_dim] -> image [batch, res, res, channels] in [-1, 1].

  Attributes:
    res, channels: the image's resolution and channel count.
    width: channels of the last block, doubled per level up to max_width.
    max_width: channel cap.
    upsample_impl: see layers.UpConv.
    dtype: compute dtype.
    bn_momentum: of the BatchNorm running averages; 0 makes a training
      call store the batch's own statistics (gan.bn_recalibrate).
    num_classes: > 0: the last num_classes entries of z are a one-hot
      class, and every BatchNorm is followed by a per-class scale and shift
      (`normalization.ClassFiLM`, conditional batch norm; the identity at
      initialisation), so that the class reaches every resolution rather
      than only the first dense layer, where G can drown it in z.
  """
  res: int
  channels: int
  width: int = 64
  max_width: int = 512
  upsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  bn_momentum: float = 0.9
  num_classes: int = 0

  @nn.compact
  def __call__(self, z, train: bool = True):
    widths = level_widths(self.width, self.max_width, num_levels(self.res))
    label = normalization.one_hot_label(z, self.num_classes)
    norm = lambda x: normalization.class_batch_norm(
        x, label, self.num_classes, train, self.bn_momentum, self.dtype)

    x = nn.Dense(4 * 4 * widths[-1], use_bias=False, dtype=self.dtype)(z)
    x = nn.relu(norm(x.reshape(z.shape[0], 4, 4, widths[-1])))
    for w in reversed(widths[:-1]):
      x = layers.UpConv(w, use_bias=False, impl=self.upsample_impl,
                        dtype=self.dtype)(x)
      x = nn.relu(norm(x))
    x = layers.UpConv(self.channels, impl=self.upsample_impl,
                      dtype=self.dtype)(x)
    return jnp.tanh(x.astype(jnp.float32))


def generator(arch: str, *, res: int, channels: int, width: int,
              max_width: int, upsample_impl: Optional[str] = None,
              num_classes: int = 0) -> nn.Module:
  """The generator of `model.arch`: DCGAN's or the residual one.

  Args:
    arch: one of resgan.ARCHS.
    res, channels, width, max_width, num_classes: as `Generator`'s.
    upsample_impl: DCGAN's UpConv implementation (the residual generator
      upsamples by repetition and has none).

  Returns:
    The unbound module.

  Raises:
    ValueError: an unknown arch.
  """
  if resgan.check_arch(arch) == "resnet":
    return resgan.ResGenerator(res=res, channels=channels, width=width,
                               max_width=max_width, num_classes=num_classes)
  return Generator(res=res, channels=channels, width=width,
                   max_width=max_width, upsample_impl=upsample_impl,
                   num_classes=num_classes)


def trunk(x, widths, arch: str, norm: str, spectral_norm: bool, train: bool,
          downsample_impl: Optional[str] = None, dtype=None):
  """The discriminator's convolutional trunk of `arch`, inside a compact
  method: `down_blocks` (DCGAN) or `resgan.res_down_blocks`; same arguments
  and output shape."""
  if resgan.check_arch(arch) == "resnet":
    return resgan.res_down_blocks(x, widths, norm, spectral_norm, train,
                                  dtype)
  return down_blocks(x, widths, norm, spectral_norm, train, downsample_impl,
                     dtype)


class Discriminator(nn.Module):
  """image -> real/fake logit [batch].

  Attributes:
    width: channels of the first block, doubled per block up to max_width.
    max_width: channel cap.
    downsample_impl: see layers.DownConv.
    spectral_norm: spectrally normalise every weight (state in
      "batch_stats"; training calls store one power iteration each).
    dtype: compute dtype.
    norm: "batch" (DCGAN), "layer" or "none" (module docstring).
    arch: "dcgan" or "resnet" (the trunk; the dense head is the same).
  """
  width: int = 64
  max_width: int = 512
  downsample_impl: Optional[str] = None
  spectral_norm: bool = False
  dtype: Optional[jnp.dtype] = None
  norm: str = "batch"
  arch: str = "dcgan"

  @nn.compact
  def __call__(self, x, train: bool = True):
    sn = lambda layer: normalization.spectral(layer, self.spectral_norm, train)
    widths = level_widths(self.width, self.max_width, num_levels(x.shape[1]))
    x = trunk(x, widths, self.arch, self.norm, self.spectral_norm, train,
              self.downsample_impl, self.dtype)
    # A dense layer on the 4x4 map is the classic 4x4 "valid" convolution.
    out = sn(nn.Dense(1, dtype=self.dtype))(x.reshape(x.shape[0], -1))
    return out[:, 0].astype(jnp.float32)
