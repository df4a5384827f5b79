"""Convolutional VAE: encoder to (mean, log-variance), decoder to logits.

The module only maps tensors; the reparameterisation noise comes from the
"latent" RNG stream and the losses live in jaxgen/tasks/vae.py.

The latent is a vector of `latent_dim` (a dense layer from and to the 4x4
bottleneck) or, with `latent_res` > 0, a `latent_res` x `latent_res` map of
`latent_dim` channels (1x1 convolutions at that level): each code then
describes its own region of the image, so thin strokes survive the round
trip that a single vector blurs.
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


def latent_shape(res: int, latent_dim: int, latent_res: int = 0):
  """The shape of one example's z: (latent_dim,) or (r, r, latent_dim).

  Args:
    res: image size.
    latent_dim: the vector's size, or the map's channels.
    latent_res: 0 for a vector; else the map's size (a power of two,
      4 <= latent_res < res).

  Returns:
    A shape tuple.

  Raises:
    ValueError: a latent_res that is not such a size.
  """
  if not latent_res:
    return (latent_dim,)
  if (latent_res < 4 or latent_res >= res
      or latent_res & (latent_res - 1)):
    raise ValueError(f"model.latent_res must be 0 or a power of two in "
                     f"[4, {res // 2}] for {res} px images, got {latent_res}.")
  return (latent_res, latent_res, latent_dim)


def _levels(res: int, latent_res: int) -> int:
  """Stride-2 levels from `res` down to the latent (or the 4x4 bottleneck)."""
  return num_levels(res) - (int(math.log2(latent_res // 4)) if latent_res
                            else 0)


class Encoder(nn.Module):
  """Image -> (mean, logvar) of a diagonal Gaussian posterior."""
  latent_dim: int
  width: int = 32
  max_width: int = 256
  downsample_impl: Optional[str] = None
  latent_res: int = 0

  @nn.compact
  def __call__(self, x):
    levels = _levels(x.shape[1], self.latent_res)
    x = nn.leaky_relu(nn.Conv(self.width, (3, 3))(x), 0.2)
    for w in level_widths(self.width, self.max_width, levels):
      x = layers.DownConv(w, impl=self.downsample_impl)(x)
      x = nn.leaky_relu(x, 0.2)
    if self.latent_res:
      stats = nn.Conv(2 * self.latent_dim, (1, 1))(x)
    else:
      stats = nn.Dense(2 * self.latent_dim)(x.reshape(x.shape[0], -1))
    mean, logvar = jnp.split(stats, 2, axis=-1)
    return mean, logvar


class Decoder(nn.Module):
  """Latent -> image logits (apply a sigmoid for pixel probabilities)."""
  res: int
  channels: int
  width: int = 32
  max_width: int = 256
  upsample_impl: Optional[str] = None
  latent_res: int = 0

  @nn.compact
  def __call__(self, z):
    widths = level_widths(self.width, self.max_width,
                          _levels(self.res, self.latent_res))
    if self.latent_res:
      x = nn.Conv(widths[-1], (1, 1))(z)
    else:
      x = nn.Dense(4 * 4 * widths[-1])(z).reshape(z.shape[0], 4, 4,
                                                  widths[-1])
    x = nn.leaky_relu(x, 0.2)
    for w in reversed(widths):
      x = nn.leaky_relu(layers.UpConv(w, impl=self.upsample_impl)(x), 0.2)
    return nn.Conv(self.channels, (3, 3))(x)


class VAE(nn.Module):
  """Encoder + reparameterisation + decoder.

  Attributes:
    res: image size (square, power of two).
    channels: image channels.
    latent_dim: size of z (its channels with latent_res).
    latent_res: 0 for a vector z; else z is latent_res x latent_res.
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
  latent_res: int = 0

  def setup(self):
    latent_shape(self.res, self.latent_dim, self.latent_res)  # Checks it.
    self.encoder = Encoder(self.latent_dim, self.width, self.max_width,
                           self.downsample_impl, self.latent_res)
    self.decoder = Decoder(self.res, self.channels, self.width, self.max_width,
                           self.upsample_impl, self.latent_res)

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
