"""Residual generator and discriminator blocks (SNGAN's CIFAR layout, Miyato
et al. 2018, after Gulrajani et al. 2017), the `model.arch="resnet"` option
of the gan and siamese_gan families.

Generator: z -> dense 4x4 -> k x UpBlock -> BatchNorm, ReLU, conv 3x3 ->
tanh, with

  UpBlock(x) = conv3(relu(bn(conv3(up(relu(bn(x))))))) + conv1(up(x))

(`up`: nearest-neighbour 2x). Discriminator trunk: k x DownBlock -> ReLU,
4x4 map out (the DCGAN heads of jaxgen/models/dcgan.py and siamese.py take it
unchanged), with

  first:  DownBlock(x) = pool(conv3(relu(conv3(x)))) + conv1(pool(x))
  others: DownBlock(x) = pool(conv3(relu(conv3(relu(x))))) + pool(conv1(x))

(`pool`: 2x2 average). Residual paths carry the gradient past every block,
which is what lets deeper and wider GANs train where a plain stack of
stride-2 convolutions stalls. Each block holds two 3x3 convolutions at its
larger resolution (G's after upsampling, D's before pooling) where DCGAN
has one 4x4 stride-2 convolution, so a step costs several times DCGAN's
FLOPs at the same widths (README.md, the `model.arch` row of "Stability
toolbox").

The generator has dcgan.Generator's interface (z with the one-hot class last
when `num_classes` > 0, per-class scale and shift after every BatchNorm;
`bn_momentum`), so a task swaps one for the other. The discriminator's
`norm` ("batch", "layer", "none") follows each convolution of the blocks
after the first, as in DCGAN's discriminator; SNGAN itself uses "none" with
spectral normalisation (`gan.d_spectral_norm`), which wraps every
convolution here.

Written here rather than taken from a library: flax's examples hold no GAN
blocks, and these must reuse jaxgen's spectral-norm and class-FiLM layers.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import normalization
from jaxgen.models.vae import level_widths, num_levels

ARCHS = ("dcgan", "resnet")


def check_arch(arch: str) -> str:
  """Returns `arch` if it is one of ARCHS; else raises a ValueError."""
  if arch not in ARCHS:
    raise ValueError(f"Unknown model.arch {arch!r}; valid: "
                     f"{', '.join(ARCHS)}.")
  return arch


def _up(x):
  """Nearest-neighbour 2x upsampling of [b, h, w, c]."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def _pool(x):
  """2x2 average pooling of [b, h, w, c]."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2))


def res_down_blocks(x, widths, norm: str, spectral_norm: bool, train: bool,
                    dtype=None):
  """The residual discriminator trunk, inside a compact method.

  Args:
    x: images [b, h, w, c].
    widths: output channels per block (each halves the resolution).
    norm: "batch", "layer" or "none", after the convolutions of every
      block but the first.
    spectral_norm: spectrally normalise every convolution.
    train: training mode (batch statistics, power iterations).
    dtype: compute dtype.

  Returns:
    ReLU of the last block [b, h / 2^k, w / 2^k, widths[-1]].

  Raises:
    ValueError: an unknown norm.
  """
  normalization.check_d_norm(norm)

  def conv(h, w, size, first):
    # A bias where no normalisation follows (it would be subtracted).
    layer = nn.Conv(w, (size, size), padding="SAME", dtype=dtype,
                    use_bias=first or norm == "none")
    h = normalization.spectral(layer, spectral_norm, train)(h)
    return h if first else normalization.d_norm(h, norm, train, dtype)

  for i, w in enumerate(widths):
    first = i == 0
    h = x if first else nn.relu(x)
    h = _pool(conv(nn.relu(conv(h, w, 3, first)), w, 3, first))
    skip = conv(_pool(x), w, 1, True) if first else _pool(conv(x, w, 1, True))
    x = h + skip
  return nn.relu(x)


class ResGenerator(nn.Module):
  """z [batch, z_dim] -> image [batch, res, res, channels] in [-1, 1].

  Attributes: as dcgan.Generator's (res, channels, width, max_width, dtype,
  bn_momentum, num_classes); `width` is the channel count of the last block.
  """
  res: int
  channels: int
  width: int = 64
  max_width: int = 512
  dtype: Optional[jnp.dtype] = None
  bn_momentum: float = 0.9
  num_classes: int = 0

  @nn.compact
  def __call__(self, z, train: bool = True):
    widths = level_widths(self.width, self.max_width, num_levels(self.res))
    label = normalization.one_hot_label(z, self.num_classes)
    norm_relu = lambda x: nn.relu(normalization.class_batch_norm(
        x, label, self.num_classes, train, self.bn_momentum, self.dtype))

    def conv(x, w, size):
      return nn.Conv(w, (size, size), padding="SAME", dtype=self.dtype)(x)

    x = nn.Dense(4 * 4 * widths[-1], dtype=self.dtype)(z)
    x = x.reshape(z.shape[0], 4, 4, widths[-1])
    # One block per level, down to `width` channels at full resolution.
    for w in list(reversed(widths[:-1])) + [widths[0]]:
      h = conv(norm_relu(conv(_up(norm_relu(x)), w, 3)), w, 3)
      x = h + conv(_up(x), w, 1)
    x = conv(norm_relu(x), self.channels, 3)
    return jnp.tanh(x.astype(jnp.float32))
