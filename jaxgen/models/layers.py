"""Shared layers. The choice of up/down-sampling implementation lives here.

`UpConv` is a stride-2 transposed convolution (PyTorch ConvTranspose2d with
kernel 4, stride 2, padding 1: output is exactly 2x the input). Models use it
instead of `nn.ConvTranspose` so that the implementation can be switched in one
place without changing what the model computes or its parameters.
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp


class UpConv(nn.Module):
  """2x upsampling transposed convolution, kernel 4x4 (HWIO param `kernel`).

  Attributes:
    features: output channels.
    use_bias: whether to add a bias.
    impl: implementation name, or None for the platform default.
    dtype: compute dtype.
  """
  features: int
  use_bias: bool = True
  impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x):
    return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2),
                            padding="SAME", use_bias=self.use_bias,
                            dtype=self.dtype)(x)
