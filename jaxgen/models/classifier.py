"""A small convolutional image classifier.

Used to check label-conditioned generators: a classifier trained on real
photos should assign generated photos to the class they were asked for.

  [Conv 3x3, BN, LeakyReLU, DownConv, BN, LeakyReLU] per level, down to 4x4
  -> global average pool -> Dropout -> Dense(num_classes)
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models import unet


class Classifier(nn.Module):
  """images [b, h, w, c] (any range, [-1, 1] here) -> logits [b, classes].

  Attributes:
    num_classes: number of classes.
    width: channels of the first level; doubles per level.
    max_width: cap on the channels.
    dropout: dropout rate before the last layer.
    downsample_impl: DownConv implementation.
    dtype: compute dtype (params are float32).
  """
  num_classes: int
  width: int = 32
  max_width: int = 256
  dropout: float = 0.3
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                dtype=self.dtype)
    levels = max(1, unet.unet_depth(x.shape[1]) - 2)
    x = x.astype(self.dtype or x.dtype)
    for i in range(levels):
      w = unet.level_width(self.width, self.max_width, i)
      x = nn.leaky_relu(norm()(nn.Conv(w, (3, 3), use_bias=False,
                                       dtype=self.dtype)(x)), 0.2)
      x = layers.DownConv(w, use_bias=False, impl=self.downsample_impl,
                          dtype=self.dtype)(x)
      x = nn.leaky_relu(norm()(x), 0.2)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)
