"""ResNet generator of CycleGAN (Zhu et al. 2017; Johnson et al. 2016).

Layout (the reference implementation's ResnetGenerator, ngf = `width`):

  ReflectPad 3, Conv 7x7 -> ngf, norm, ReLU
  2 x [DownConv 3x3 s2 p1 -> 2x channels, norm, ReLU]
  `num_blocks` x ResnetBlock(4 ngf):
      x + [ReflectPad 1, Conv 3x3, norm, ReLU, ReflectPad 1, Conv 3x3, norm]
  2 x [UpConv 3x3 s2 p1 op1 -> channels / 2, norm, ReLU]
  ReflectPad 3, Conv 7x7 -> out_channels, tanh

`norm` is "instance" (no affine parameters, PyTorch's InstanceNorm2d
defaults, as the reference) by default; every convolution has a bias, as in
the reference when it uses instance norm. The stride-2 layers are
jaxgen.models.layers.DownConv/UpConv with kernel_size=3, so they get the
fast exact CPU lowerings. Inputs need a side divisible by 4.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers


def reflect_pad(x, pad: int):
  """Reflection padding of H and W by `pad` (PyTorch ReflectionPad2d).

  Args:
    x: [b, h, w, c]; h and w must exceed `pad`.
    pad: pixels added on every side.

  Returns:
    [b, h + 2 pad, w + 2 pad, c].
  """
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class ResnetBlock(nn.Module):
  """x + two reflect-padded 3x3 convolutions with norm (ReLU between)."""
  features: int
  norm: str = "instance"
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    norm = layers.make_norm(self.norm, train, self.dtype)
    bias = self.norm != "batch"
    h = nn.Conv(self.features, (3, 3), padding="VALID", use_bias=bias,
                dtype=self.dtype)(reflect_pad(x, 1))
    h = nn.relu(norm()(h))
    h = nn.Conv(self.features, (3, 3), padding="VALID", use_bias=bias,
                dtype=self.dtype)(reflect_pad(h, 1))
    return x + norm()(h)


class ResnetGenerator(nn.Module):
  """Image [b, h, w, Cin] -> image [b, h, w, out_channels] in [-1, 1].

  Attributes:
    out_channels: channels of the output image.
    width: ngf, channels of the first layer (64 in the reference).
    num_blocks: residual blocks (9 for 256 px, 6 for 128 px in the
      reference).
    norm: "instance", "batch" or "none".
    upsample_impl: UpConv implementation (None/'auto' = backend default).
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32); the output is float32.
  """
  out_channels: int
  width: int = 64
  num_blocks: int = 9
  norm: str = "instance"
  upsample_impl: Optional[str] = None
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    if x.shape[1] % 4 or x.shape[2] % 4 or min(x.shape[1:3]) < 8:
      raise ValueError(f"The ResNet generator needs a side divisible by 4 and "
                       f"at least 8 px, got {x.shape[1]}x{x.shape[2]}.")
    norm = layers.make_norm(self.norm, train, self.dtype)
    bias = self.norm != "batch"
    x = x.astype(self.dtype or x.dtype)
    x = nn.Conv(self.width, (7, 7), padding="VALID", use_bias=bias,
                dtype=self.dtype, name="stem")(reflect_pad(x, 3))
    x = nn.relu(norm()(x))
    for i in range(2):
      x = layers.DownConv(self.width * 2 ** (i + 1), kernel_size=3,
                          use_bias=bias, impl=self.downsample_impl,
                          dtype=self.dtype, name=f"down{i}")(x)
      x = nn.relu(norm()(x))
    for i in range(self.num_blocks):
      x = ResnetBlock(self.width * 4, self.norm, self.dtype,
                      name=f"block{i}")(x, train)
    for i in reversed(range(2)):
      x = layers.UpConv(self.width * 2 ** i, kernel_size=3, use_bias=bias,
                        impl=self.upsample_impl, dtype=self.dtype,
                        name=f"up{i}")(x)
      x = nn.relu(norm()(x))
    x = nn.Conv(self.out_channels, (7, 7), padding="VALID", dtype=self.dtype,
                name="head")(reflect_pad(x, 3))
    return jnp.tanh(x.astype(jnp.float32))
