"""Siamese discriminator: one shared encoder, an adversarial and a similarity
head.

  f : image -> features        [DownConv, (norm), LeakyReLU(0.2)]* -> flatten
  D(x)    = w_adv . f(x) + b_adv                         (real/fake logit)
  S(a, b) = MLP(|f(a) - f(b)|)                           (similarity logit)

The encoder is one submodule, so both images of a pair and both heads use
the same weights; with `similarity=False` the module is a DCGAN
discriminator (encoder + linear head on the 4x4 map), which is what the
"plain" baseline trains.

Calls: `__call__(x[, label])` -> (features, D logits);
`similarity_logits(fa, fb)` -> S logits from two feature batches (so a
training step encodes each image once and reuses the features for both
heads); `class_logits(f)` -> class logits (the optional class head, below).

`num_classes` > 0 makes D class-conditional by projection (Miyato & Koyama
2018): D(x, y) = w_adv . f(x) + b_adv + e_y . f(x), with e_y a learned
embedding of class y (`projection`, not spectrally normalised, as in their
discriminator). The class can then not be ignored: D judges whether x looks
like a real image *of class y*. The similarity head stays label-free.

`class_head=True` (with num_classes > 0) adds AC-GAN's auxiliary classifier
(Odena et al. 2017) on the same features: `class_logits(f)` = W f + b, K
logits that say which class an image shows. The projection asks "is x a
real image of class y?" of one scalar; the class head must name the class,
so D's features have to separate cats from dogs, and G, trained to be
classified as the class it was asked for (jaxgen/tasks/siamese_gan.py),
must put that difference into its images. It is not spectrally normalised
(like the projection): it shapes no adversarial logit.

`spectral_norm=True` (`gan.d_spectral_norm`) spectrally normalises every
weight of the encoder and both heads (jaxgen/models/normalization.py); the
encoder's `norm` stays as configured (set it to "none" separately). Training
calls of `__call__` (train=True) then need mutable=["batch_stats"] and store
one power iteration of every weight, the similarity head's included;
`similarity_logits` uses the stored state.
"""

import functools
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxgen.models import dcgan
from jaxgen.models import normalization
from jaxgen.models.vae import level_widths, num_levels


class Encoder(nn.Module):
  """image [b, res, res, c] -> features [b, 4 * 4 * widths[-1]].

  Attributes:
    width: channels of the first block, doubled per block up to max_width.
    max_width: channel cap.
    norm: "batch" (DCGAN; batch statistics in training), "layer" (per
      example, so a pair's features do not depend on the rest of the batch)
      or "none". The first block is never normalised, as in DCGAN.
    downsample_impl: see layers.DownConv.
    spectral_norm: spectrally normalise the convolution kernels.
    arch: "dcgan" or "resnet" (residual blocks, jaxgen/models/resgan.py).
  """
  width: int = 64
  max_width: int = 512
  norm: str = "batch"
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  spectral_norm: bool = False
  arch: str = "dcgan"

  @nn.compact
  def __call__(self, x, train: bool = True):
    widths = level_widths(self.width, self.max_width, num_levels(x.shape[1]))
    x = dcgan.trunk(x, widths, self.arch, self.norm, self.spectral_norm,
                    train, self.downsample_impl, self.dtype)
    return x.reshape(x.shape[0], -1)


class SimilarityHead(nn.Module):
  """(fa, fb) -> logit that a and b are alike, from |fa - fb| only.

  Depending only on the absolute difference makes S symmetric, S(a, b) =
  S(b, a), and blind to what the two images share.

  Attributes:
    hidden: width of the hidden layer (0: a linear head).
    spectral_norm: spectrally normalise the dense layers' kernels.
  """
  hidden: int = 128
  dtype: Optional[jnp.dtype] = None
  spectral_norm: bool = False

  @nn.compact
  def __call__(self, fa, fb, train: bool = True):
    sn = lambda layer: normalization.spectral(layer, self.spectral_norm, train)
    h = jnp.abs(fa - fb)
    if self.hidden:
      h = nn.leaky_relu(sn(nn.Dense(self.hidden, dtype=self.dtype))(h), 0.2)
    return sn(nn.Dense(1, dtype=self.dtype))(h)[:, 0].astype(jnp.float32)


class Projection(nn.Module):
  """(features [b, d], labels [b]) -> e_label . features [b] (float32)."""
  num_classes: int
  dtype: Optional[jnp.dtype] = None

  @nn.compact
  def __call__(self, feats, labels):
    embed = nn.Embed(self.num_classes, feats.shape[-1], dtype=self.dtype)
    return jnp.sum(embed(labels) * feats, -1).astype(jnp.float32)


class SiameseDiscriminator(nn.Module):
  """Shared encoder `encoder`, heads `adv_head` and (optionally) `sim_head`.

  Attributes:
    width, max_width, norm, downsample_impl: of the Encoder.
    similarity: whether the similarity head exists.
    sim_hidden: hidden width of the similarity head.
    spectral_norm: spectrally normalise every weight (encoder and heads).
    num_classes: > 0 adds the class projection (module docstring).
    class_head: adds the auxiliary class head (needs num_classes > 0).
    arch: the Encoder's trunk, "dcgan" or "resnet".
  """
  width: int = 64
  max_width: int = 512
  norm: str = "batch"
  similarity: bool = True
  sim_hidden: int = 128
  downsample_impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  spectral_norm: bool = False
  num_classes: int = 0
  class_head: bool = False
  arch: str = "dcgan"

  def setup(self):
    if self.class_head and not self.num_classes:
      raise ValueError("class_head needs num_classes > 0.")
    self.encoder = Encoder(self.width, self.max_width, self.norm,
                           self.downsample_impl, self.dtype,
                           self.spectral_norm, self.arch)
    self.adv_head = nn.Dense(1, dtype=self.dtype)
    if self.spectral_norm:
      self.adv_head_sn = nn.SpectralNorm(self.adv_head)
    if self.similarity:
      self.sim_head = SimilarityHead(self.sim_hidden, self.dtype,
                                     self.spectral_norm)
    if self.num_classes:
      self.projection = Projection(self.num_classes, self.dtype)
    if self.class_head:
      self.cls_head = nn.Dense(self.num_classes, dtype=self.dtype)

  def __call__(self, x, label=None, train: bool = True):
    """Returns (features [b, d], real/fake logits [b]).

    Args:
      x: images [b, res, res, c] in [-1, 1].
      label: [b] class indices; required when num_classes > 0 (except at
        initialisation), ignored otherwise.
      train: training mode (batch statistics, power iterations).
    """
    feats = self.encoder(x, train)
    head = (functools.partial(self.adv_head_sn, update_stats=train)
            if self.spectral_norm else self.adv_head)
    logits = head(feats)[:, 0].astype(jnp.float32)
    if self.num_classes:
      if label is None:
        if not self.is_initializing():
          raise ValueError(f"This discriminator is conditioned on "
                           f"{self.num_classes} classes and needs labels.")
        label = jnp.zeros(x.shape[:1], jnp.int32)
      logits = logits + self.projection(feats, label)
    if self.similarity and (self.is_initializing() or
                            (train and self.spectral_norm)):
      # Creates the head's parameters; with spectral normalisation, a
      # training call also stores the head's power iteration here (it does
      # not depend on the inputs; the head's output is unused), so that
      # `similarity_logits` needs no mutable state.
      self.sim_head(feats, feats, train)
    if self.class_head and self.is_initializing():
      self.cls_head(feats)  # Creates the class head's parameters.
    return feats, logits

  def class_logits(self, feats):
    """Class logits [b, num_classes] (float32) of feature batches."""
    if not self.class_head:
      raise ValueError("This discriminator has no class head "
                       "(class_head=False).")
    return self.cls_head(feats).astype(jnp.float32)

  def similarity_logits(self, fa, fb):
    """S logits [b] for feature batches fa, fb (pairs are rows)."""
    if not self.similarity:
      raise ValueError("This discriminator has no similarity head "
                       "(similarity=False).")
    return self.sim_head(fa, fb, train=False)
