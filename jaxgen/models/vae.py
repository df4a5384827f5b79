"""Convolutional VAE: encoder to (mean, log-variance), decoder to logits.

The module only maps tensors; the reparameterisation noise comes from the
"latent" RNG stream and the losses live in jaxgen/tasks/vae.py.
"""

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models import layers


def num_levels(res: int) -> int:
  """Number of stride-2 levels between `res` and the 4x4 bottleneck."""
  levels = math.log2(res / 4)
  if res < 8 or levels != int(levels):
    raise ValueError(f"Resolution must be a power of two >= 8, got {res}.")
  return int(levels)


def level_widths(width: int, max_width: int, levels: int):
  """Channel count per level, doubling from `width` and capped."""
  return [min(width * 2**i, max_width) for i in range(levels)]


class Encoder(nn.Module):
  """Image -> (mean, logvar) of a diagonal Gaussian posterior."""
  latent_dim: int
  width: int = 32
  max_width: int = 256
  downsample_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(self.width, (3, 3))(x), 0.2)
    for w in level_widths(self.width, self.max_width, num_levels(x.shape[1])):
      x = layers.DownConv(w, impl=self.downsample_impl)(x)
      x = nn.leaky_relu(x, 0.2)
    x = x.reshape(x.shape[0], -1)
    stats = nn.Dense(2 * self.latent_dim)(x)
    mean, logvar = jnp.split(stats, 2, axis=-1)
    return mean, logvar


class Decoder(nn.Module):
  """Latent -> image logits (apply a sigmoid for pixel probabilities)."""
  res: int
  channels: int
  width: int = 32
  max_width: int = 256
  upsample_impl: Optional[str] = None

  @nn.compact
  def __call__(self, z):
    widths = level_widths(self.width, self.max_width, num_levels(self.res))
    x = nn.Dense(4 * 4 * widths[-1])(z).reshape(z.shape[0], 4, 4, widths[-1])
    x = nn.leaky_relu(x, 0.2)
    for w in reversed(widths):
      x = nn.leaky_relu(layers.UpConv(w, impl=self.upsample_impl)(x), 0.2)
    return nn.Conv(self.channels, (3, 3))(x)


class VAE(nn.Module):
  """Encoder + reparameterisation + decoder.

  Attributes:
    res: image size (square, power of two).
    channels: image channels.
    latent_dim: size of z.
    width: channels of the first level, doubled per level up to max_width.
    max_width: channel cap.
    upsample_impl: see jaxgen.models.layers.
    downsample_impl: see jaxgen.models.layers.
  """
  res: int
  channels: int
  latent_dim: int = 32
  width: int = 32
  max_width: int = 256
  upsample_impl: Optional[str] = None
  downsample_impl: Optional[str] = None

  def setup(self):
    self.encoder = Encoder(self.latent_dim, self.width, self.max_width,
                           self.downsample_impl)
    self.decoder = Decoder(self.res, self.channels, self.width, self.max_width,
                           self.upsample_impl)

  def __call__(self, x, sample=True):
    """Returns (logits, mean, logvar); z is sampled from the "latent" rng."""
    mean, logvar = self.encoder(x)
    if sample:
      eps = jax.random.normal(self.make_rng("latent"), mean.shape, mean.dtype)
      z = mean + jnp.exp(0.5 * logvar) * eps
    else:
      z = mean
    return self.decoder(z), mean, logvar

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)
