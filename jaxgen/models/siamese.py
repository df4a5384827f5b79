"""Siamese discriminator: one shared encoder, an adversarial and a similarity
head.

  f : image -> features        [DownConv, (norm), LeakyReLU(0.2)]* -> flatten
  D(x)    = w_adv . f(x) + b_adv                         (real/fake logit)
  S(a, b) = MLP(|f(a) - f(b)|)                           (similarity logit)

The encoder is one submodule, so both images of a pair and both heads use
the same weights; with `similarity=False` the module is a DCGAN
discriminator (encoder + linear head on the 4x4 map), which is what the
"plain" baseline trains.

Calls: `__call__(x)` -> (features, D logits); `similarity(fa, fb)` -> S
logits from two feature batches (so a training step encodes each image once
and reuses the features for both heads).
"""

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import layers
from jaxgen.models.vae import level_widths, num_levels

NORMS = ("batch", "layer", "none")


class Encoder(nn.Module):
  """image [b, res, res, c] -> features [b, 4 * 4 * widths[-1]].

  Attributes:
    width: channels of the first block, doubled per block up to max_width.
    max_width: channel cap.
    norm: "batch" (DCGAN; batch statistics in training), "layer" (per
      example, so a pair's features do not depend on the rest of the batch)
      or "none". The first block is never normalised, as in DCGAN.
    downsample_impl: see layers.DownConv.
  """
  width: int = 64
  max_width: int = 512
  norm: str = "batch"
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    if self.norm not in NORMS:
      raise ValueError(f"Unknown encoder norm {self.norm!r}; valid: "
                       f"{', '.join(NORMS)}.")
    widths = level_widths(self.width, self.max_width, num_levels(x.shape[1]))
    for i, w in enumerate(widths):
      x = layers.DownConv(w, use_bias=i == 0 or self.norm == "none",
                          impl=self.downsample_impl, dtype=self.dtype)(x)
      if i and self.norm == "batch":
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         dtype=self.dtype)(x)
      elif i and self.norm == "layer":
        x = nn.LayerNorm(dtype=self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    return x.reshape(x.shape[0], -1)


class SimilarityHead(nn.Module):
  """(fa, fb) -> logit that a and b are alike, from |fa - fb| only.

  Depending only on the absolute difference makes S symmetric, S(a, b) =
  S(b, a), and blind to what the two images share.

  Attributes:
    hidden: width of the hidden layer (0: a linear head).
  """
  hidden: int = 128
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, fa, fb):
    h = jnp.abs(fa - fb)
    if self.hidden:
      h = nn.leaky_relu(nn.Dense(self.hidden, dtype=self.dtype)(h), 0.2)
    return nn.Dense(1, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)


class SiameseDiscriminator(nn.Module):
  """Shared encoder `encoder`, heads `adv_head` and (optionally) `sim_head`.

  Attributes:
    width, max_width, norm, downsample_impl: of the Encoder.
    similarity: whether the similarity head exists.
    sim_hidden: hidden width of the similarity head.
  """
  width: int = 64
  max_width: int = 512
  norm: str = "batch"
  similarity: bool = True
  sim_hidden: int = 128
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None

  def setup(self):
    self.encoder = Encoder(self.width, self.max_width, self.norm,
                           self.downsample_impl, self.dtype)
    self.adv_head = nn.Dense(1, dtype=self.dtype)
    if self.similarity:
      self.sim_head = SimilarityHead(self.sim_hidden, self.dtype)

  def __call__(self, x, train: bool = True):
    """Returns (features [b, d], real/fake logits [b])."""
    feats = self.encoder(x, train)
    logits = self.adv_head(feats)[:, 0].astype(jnp.float32)
    if self.similarity and self.is_initializing():
      self.sim_head(feats, feats)  # Creates the head's parameters.
    return feats, logits

  def similarity_logits(self, fa, fb):
    """S logits [b] for feature batches fa, fb (pairs are rows)."""
    if not self.similarity:
      raise ValueError("This discriminator has no similarity head "
                       "(similarity=False).")
    return self.sim_head(fa, fb)
