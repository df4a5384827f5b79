"""PyTorch reference of the VAE train step.

Mirrors jaxgen/models/vae.py (Encoder, Decoder, reparameterisation) and the
train step of jaxgen/tasks/vae.py: loss = mean over the batch of the summed
reconstruction loss (config.loss.recon) plus beta * KL, with beta warmed up
linearly from 0 over config.loss.warmup_steps (beta is 0 on the first step,
as in jaxgen, where it is read before the step counter increments).
"""

import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref.common import Adam, device, to_nchw
from jaxgen.models.vae import level_widths, num_levels

RECON_LOSSES = ("bce", "mse")


class Encoder(nn.Module):
  """Image -> (mean, logvar): conv 3x3, [DownConv, LeakyReLU]*, dense."""

  def __init__(self, res, channels, latent_dim, width, max_width):
    super().__init__()
    widths = level_widths(width, max_width, num_levels(res))
    layers = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)]
    cin = width
    for w in widths:
      layers += [nn.Conv2d(cin, w, 4, 2, 1), nn.LeakyReLU(0.2)]
      cin = w
    self.convs = nn.Sequential(*layers)
    self.dense = nn.Linear(4 * 4 * cin, 2 * latent_dim)

  def forward(self, x):
    stats = self.dense(self.convs(x).flatten(1))
    mean, logvar = stats.chunk(2, dim=-1)
    return mean, logvar


class Decoder(nn.Module):
  """Latent -> logits: dense 4x4, [UpConv, LeakyReLU]*, conv 3x3."""

  def __init__(self, res, channels, latent_dim, width, max_width):
    super().__init__()
    widths = level_widths(width, max_width, num_levels(res))
    self.top = widths[-1]
    self.dense = nn.Linear(latent_dim, 4 * 4 * self.top)
    layers = []
    cin = self.top
    for w in reversed(widths):
      layers += [nn.ConvTranspose2d(cin, w, 4, 2, 1), nn.LeakyReLU(0.2)]
      cin = w
    layers.append(nn.Conv2d(cin, channels, 3, padding=1))
    self.convs = nn.Sequential(*layers)

  def forward(self, z):
    x = F.leaky_relu(self.dense(z).view(z.shape[0], self.top, 4, 4), 0.2)
    return self.convs(x)


class VAE(nn.Module):
  """Encoder + reparameterisation + decoder -> (logits, mean, logvar)."""

  def __init__(self, res, channels, latent_dim, width, max_width):
    super().__init__()
    self.encoder = Encoder(res, channels, latent_dim, width, max_width)
    self.decoder = Decoder(res, channels, latent_dim, width, max_width)

  def forward(self, x):
    mean, logvar = self.encoder(x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
    return self.decoder(z), mean, logvar


def reconstruction_loss(logits, x, kind):
  """[batch] loss summed over pixels, as jaxgen.losses.reconstruction_loss."""
  if kind == "bce":
    loss = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
  elif kind == "mse":
    loss = torch.square(logits - x)
  else:
    raise ValueError(
        f"Unknown reconstruction loss {kind!r}; valid: 'bce', 'mse'.")
  return loss.flatten(1).sum(-1)


def kl_normal(mean, logvar):
  """[batch] KL(N(mean, exp(logvar)) || N(0, I)), summed over latents."""
  return 0.5 * torch.sum(torch.exp(logvar) + mean.square() - 1.0 - logvar, -1)


class VAEReference:
  """The VAE train step on a stored batch."""

  def __init__(self, config, batch):
    self.config = config
    self.device = device()
    self.x = to_nchw(batch["image"], self.device)
    _, channels, res, _ = self.x.shape
    m = config.model
    self.model = VAE(res, channels, m.latent_dim, m.width,
                     m.max_width).to(self.device)
    self.opt = Adam(self.model.parameters(), config.optim,
                    config.train.num_steps)
    if config.loss.recon not in RECON_LOSSES:
      raise ValueError(f"Unknown reconstruction loss {config.loss.recon!r}; "
                       "valid: 'bce', 'mse'.")
    self.num_steps = 0

  def _beta(self):
    cfg = self.config.loss
    if not cfg.warmup_steps:
      return cfg.beta
    return cfg.beta * min(1.0, self.num_steps / cfg.warmup_steps)

  def parameters(self):
    return list(self.model.parameters())

  def step(self) -> float:
    logits, mean, logvar = self.model(self.x)
    recon = reconstruction_loss(logits, self.x, self.config.loss.recon)
    loss = torch.mean(recon + self._beta() * kl_normal(mean, logvar))
    self.opt.zero_grad()
    loss.backward()
    self.opt.step()
    self.num_steps += 1
    return loss.item()


def make(config, batch) -> VAEReference:
  """The reference VAE train step for `config` on `batch` (see package)."""
  return VAEReference(config, batch)
