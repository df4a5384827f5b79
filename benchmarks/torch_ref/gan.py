"""PyTorch reference of the DCGAN train step.

Mirrors jaxgen/models/dcgan.py (Generator, Discriminator), the GAN losses of
jaxgen/losses.py and GANTask.train_step of jaxgen/tasks/gan.py with
gan.d_steps = gan.g_steps = 1:

  D update: fake = G(z) (train mode, no gradient), D(real) and D(fake) as
    two train-mode passes, gan_d_loss, backward through D, Adam(d_optim).
  G update on a new z: G(z) and D(G(z)) in train mode, with D's parameters
    frozen (JAX differentiates the generator only, so D's kernel gradients
    are never computed), gan_g_loss, backward, Adam(g_optim).

jaxgen discards the generator's batch-statistics update of the D step and
the discriminator's of the G step; torch's BatchNorm updates its running
averages in every train-mode pass, which costs the same.
"""

import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref.common import Adam, device, to_nchw
from jaxgen.models.vae import level_widths, num_levels

LOSSES = ("bce", "lsgan", "hinge")


def _batch_norm(features):
  # flax BatchNorm(momentum=0.9) keeps 0.9 of the old average; eps 1e-5.
  return nn.BatchNorm2d(features, eps=1e-5, momentum=0.1)


class Generator(nn.Module):
  """z -> dense 4x4, BN, ReLU -> [UpConv, BN, ReLU]* -> UpConv -> tanh."""

  def __init__(self, res, channels, z_dim, width, max_width):
    super().__init__()
    widths = level_widths(width, max_width, num_levels(res))
    self.top = widths[-1]
    self.dense = nn.Linear(z_dim, 4 * 4 * self.top, bias=False)
    layers = [_batch_norm(self.top), nn.ReLU()]
    cin = self.top
    for w in reversed(widths[:-1]):
      layers += [nn.ConvTranspose2d(cin, w, 4, 2, 1, bias=False),
                 _batch_norm(w), nn.ReLU()]
      cin = w
    layers += [nn.ConvTranspose2d(cin, channels, 4, 2, 1), nn.Tanh()]
    self.convs = nn.Sequential(*layers)

  def forward(self, z):
    return self.convs(self.dense(z).view(z.shape[0], self.top, 4, 4))


class Discriminator(nn.Module):
  """image -> [DownConv, (BN), LeakyReLU(0.2)]* -> dense -> logit [batch]."""

  def __init__(self, res, channels, width, max_width):
    super().__init__()
    layers = []
    cin = channels
    for i, w in enumerate(level_widths(width, max_width, num_levels(res))):
      layers.append(nn.Conv2d(cin, w, 4, 2, 1, bias=i == 0))
      if i:  # DCGAN: no normalisation on the first block.
        layers.append(_batch_norm(w))
      layers.append(nn.LeakyReLU(0.2))
      cin = w
    self.convs = nn.Sequential(*layers)
    self.dense = nn.Linear(4 * 4 * cin, 1)

  def forward(self, x):
    return self.dense(self.convs(x).flatten(1))[:, 0]


def _check_loss(kind):
  if kind not in LOSSES:
    raise ValueError(f"Unknown GAN loss {kind!r}; valid: 'bce', 'lsgan', "
                     "'hinge'.")


def gan_d_loss(real_logits, fake_logits, kind="bce"):
  """Mean discriminator loss, as jaxgen.losses.gan_d_loss then a mean."""
  _check_loss(kind)
  if kind == "bce":
    loss = (F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits), reduction="none") +
            F.binary_cross_entropy_with_logits(
                fake_logits, torch.zeros_like(fake_logits), reduction="none"))
  elif kind == "lsgan":
    loss = torch.square(real_logits - 1.0) + torch.square(fake_logits)
  else:
    loss = F.relu(1.0 - real_logits) + F.relu(1.0 + fake_logits)
  # Per-example means over equal-size patches, then the batch mean.
  return loss.mean()


def gan_g_loss(fake_logits, kind="bce"):
  """Mean generator loss (non-saturating for "bce"), as jaxgen.losses."""
  _check_loss(kind)
  if kind == "bce":
    loss = F.binary_cross_entropy_with_logits(
        fake_logits, torch.ones_like(fake_logits), reduction="none")
  elif kind == "lsgan":
    loss = torch.square(fake_logits - 1.0)
  else:
    loss = -fake_logits
  return loss.mean()


class GANReference:
  """The DCGAN train step (one D update, then one G update) on a batch."""

  def __init__(self, config, batch):
    gan = config.gan
    if gan.get("d_steps", 1) != 1 or gan.get("g_steps", 1) != 1:
      raise NotImplementedError(
          "The PyTorch GAN reference mirrors gan.d_steps = gan.g_steps = 1 "
          f"only, got d_steps={gan.d_steps}, g_steps={gan.g_steps}.")
    _check_loss(gan.loss)
    self.loss = gan.loss
    self.device = device()
    self.image = to_nchw(batch["image"], self.device)
    _, channels, res, _ = self.image.shape
    m = config.model
    self.z_dim = m.z_dim
    self.gen = Generator(res, channels, m.z_dim, m.g_width,
                         m.max_width).to(self.device)
    self.disc = Discriminator(res, channels, m.d_width,
                              m.max_width).to(self.device)
    steps = config.train.num_steps
    self.g_opt = Adam(self.gen.parameters(), config.g_optim, steps)
    self.d_opt = Adam(self.disc.parameters(), config.d_optim, steps)

  def parameters(self):
    return list(self.gen.parameters()) + list(self.disc.parameters())

  def _z(self, num):
    return torch.randn(num, self.z_dim, device=self.device)

  def step(self) -> float:
    real = self.image * 2.0 - 1.0
    n = real.shape[0]
    # Discriminator update; the fake batch carries no gradient.
    with torch.no_grad():
      fake = self.gen(self._z(n))
    d_loss = gan_d_loss(self.disc(real), self.disc(fake), self.loss)
    self.d_opt.zero_grad()
    d_loss.backward()
    self.d_opt.step()
    # Generator update through the updated, frozen discriminator.
    self.disc.requires_grad_(False)
    g_loss = gan_g_loss(self.disc(self.gen(self._z(n))), self.loss)
    self.g_opt.zero_grad()
    g_loss.backward()
    self.g_opt.step()
    self.disc.requires_grad_(True)
    return (d_loss.detach() + g_loss.detach()).item()


def make(config, batch) -> GANReference:
  """The reference GAN train step for `config` on `batch` (see package)."""
  return GANReference(config, batch)
