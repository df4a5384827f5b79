"""PyTorch reference of the Siamese-discriminator GAN train step.

Mirrors jaxgen/models/dcgan.py (Generator), jaxgen/models/siamese.py
(Encoder, SimilarityHead, SiameseDiscriminator) and the train step of
jaxgen/tasks/siamese_gan.py (GANTask's alternation in jaxgen/tasks/gan.py
with SiameseGANTask's losses and optional EMA), NCHW, float32:

  D update: fake = G(z1) (train mode, no grad, G statistics dropped);
    f, D(x) and f', D(fake) (real and fake batches normalised separately);
    L_D = adv(D(x), D(fake)) + lambda_D * adv(S(x, roll(x)), S(x, fake))
  G update: fake = G(z2) (train mode, statistics kept); D in train mode with
    its statistics dropped and no D weight gradients;
    L_G = adv(D(fake)) + lambda_G * adv(S(x, fake))  (non-saturating)
  EMA (gan.ema_decay > 0, or model.ema_decay of older configs): generator
    parameters and BN running averages.

S(a, b) = MLP(|f(a) - f(b)|). Features are flattened NCHW instead of NHWC
(a permutation of the same values). The step's cheap metrics (sigmoid
means) are not computed. The generator and the adversarial losses are the
GAN reference's, `Adam`, `device` and `to_nchw` come from common.py.
"""

import contextlib

import torch
from torch import nn

from benchmarks.torch_ref.cgan import bn, frozen_stats
from benchmarks.torch_ref.gan import Generator  # dcgan.Generator.
from benchmarks.torch_ref.gan import gan_d_loss as d_adv
from benchmarks.torch_ref.gan import gan_g_loss as g_adv
from benchmarks.torch_ref.common import Adam, device, to_nchw
from jaxgen.models.vae import level_widths, num_levels


class ChannelLayerNorm(nn.Module):
  """flax nn.LayerNorm on NHWC (over channels, eps 1e-6) for NCHW inputs."""

  def __init__(self, channels):
    super().__init__()
    self.norm = nn.LayerNorm(channels, eps=1e-6)

  def forward(self, x):
    return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Encoder(nn.Module):
  """siamese.Encoder: [DownConv, (norm), LeakyReLU(0.2)]* -> flatten."""

  def __init__(self, in_ch, res, width, max_width, norm):
    super().__init__()
    if norm not in ("batch", "layer", "none"):
      raise ValueError(f"Unknown encoder norm {norm!r}.")
    layers, c = [], in_ch
    for i, w in enumerate(level_widths(width, max_width, num_levels(res))):
      layers.append(nn.Conv2d(c, w, 4, 2, 1, bias=i == 0 or norm == "none"))
      if i and norm == "batch":
        layers.append(bn(w))
      elif i and norm == "layer":
        layers.append(ChannelLayerNorm(w))
      layers.append(nn.LeakyReLU(0.2))
      c = w
    self.net = nn.Sequential(*layers)
    self.features = 4 * 4 * c

  def forward(self, x):
    return self.net(x).flatten(1)


class SiameseDiscriminator(nn.Module):
  """Shared encoder, adversarial head and (optional) similarity head."""

  def __init__(self, in_ch, res, m, similarity):
    super().__init__()
    self.encoder = Encoder(in_ch, res, m.d_width, m.max_width,
                           m.get("d_norm", "batch"))
    feats = self.encoder.features
    self.adv_head = nn.Linear(feats, 1)
    self.sim_head = None
    if similarity:
      hidden = m.get("sim_hidden", 128)
      self.sim_head = (nn.Sequential(nn.Linear(feats, hidden),
                                     nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
                       if hidden else nn.Linear(feats, 1))

  def forward(self, x):
    """(features [b, d], real/fake logits [b])."""
    feats = self.encoder(x)
    return feats, self.adv_head(feats)[:, 0]

  def similarity(self, fa, fb):
    return self.sim_head(torch.abs(fa - fb))[:, 0]


class SiameseGANReference:
  """One SiameseGANTask.train_step on a stored batch (module docstring)."""

  def __init__(self, config, batch):
    m, self.gan, self.sim = config.model, config.gan, config.siamese
    if self.gan.d_steps > 1 and self.gan.g_steps > 1:
      raise ValueError("Set at most one of gan.d_steps and gan.g_steps > 1.")
    self.dev = dev = device()
    self.real = to_nchw(batch["image"], dev) * 2.0 - 1.0  # base.to_signed.
    _, channels, res, _ = self.real.shape
    self.z_dim = m.z_dim
    self.use_sim = self.sim.d_sim_weight > 0 or self.sim.g_sim_weight > 0
    self.gen = Generator(res, channels, m.z_dim, m.g_width,
                         m.max_width).to(dev).train()
    self.disc = SiameseDiscriminator(channels, res, m,
                                     self.use_sim).to(dev).train()
    steps = config.train.num_steps
    self.g_opt = Adam(self.gen.parameters(), config.g_optim, steps)
    self.d_opt = Adam(self.disc.parameters(), config.d_optim, steps)
    self.ema_decay = float(self.gan.get("ema_decay", 0.0) or
                           m.get("ema_decay", 0.0))
    self.ema = None
    if self.ema_decay > 0:
      self.ema = [t.detach().clone() for t in self._ema_sources()]
    self.count = 0

  def parameters(self):
    return list(self.gen.parameters()) + list(self.disc.parameters())

  def _ema_sources(self):
    """Generator params and BN running averages (jaxgen's batch_stats)."""
    stats = [t for mod in self.gen.modules() if isinstance(mod, nn.BatchNorm2d)
             for t in (mod.running_mean, mod.running_var)]
    return list(self.gen.parameters()) + stats

  def _z(self):
    return torch.randn(self.real.shape[0], self.z_dim, device=self.dev)

  def _d_loss(self, fake):
    kind = self.gan.loss
    f_real, real_logits = self.disc(self.real)
    f_fake, fake_logits = self.disc(fake)
    loss = d_adv(real_logits, fake_logits, kind)
    if self.use_sim:
      s_rr = self.disc.similarity(f_real, torch.roll(f_real, 1, 0))
      s_rf = self.disc.similarity(f_real, f_fake)
      loss = loss + self.sim.d_sim_weight * d_adv(s_rr, s_rf, kind)
    return loss

  def _g_loss(self, fake):
    kind = self.gan.loss
    f_fake, fake_logits = self.disc(fake)
    loss = g_adv(fake_logits, kind)
    if self.use_sim:
      f_real, _ = self.disc(self.real)
      loss = loss + self.sim.g_sim_weight * g_adv(
          self.disc.similarity(f_real, f_fake), kind)
    return loss

  def step(self) -> float:
    gan = self.gan
    # GANTask._maybe: an update not applied only evaluates its loss.
    apply_d = gan.g_steps <= 1 or self.count % gan.g_steps == 0
    apply_g = gan.d_steps <= 1 or self.count % gan.d_steps == gan.d_steps - 1
    self.count += 1

    with torch.no_grad(), frozen_stats(self.gen):
      fake = self.gen(self._z())
    self.disc.requires_grad_(True)
    with torch.set_grad_enabled(apply_d), (
        contextlib.nullcontext() if apply_d else frozen_stats(self.disc)):
      d_loss = self._d_loss(fake)
    if apply_d:
      self.d_opt.zero_grad()
      d_loss.backward()
      self.d_opt.step()

    self.disc.requires_grad_(False)
    with torch.set_grad_enabled(apply_g), frozen_stats(
        self.disc, *([] if apply_g else [self.gen])):
      g_loss = self._g_loss(self.gen(self._z()))
    if apply_g:
      self.g_opt.zero_grad()
      g_loss.backward()
      self.g_opt.step()

    if self.ema is not None:
      with torch.no_grad():
        torch._foreach_lerp_(self.ema, self._ema_sources(),  # pylint: disable=protected-access
                             1.0 - self.ema_decay)
    return g_loss.item()


def make(config, batch) -> SiameseGANReference:
  """The Siamese-GAN reference for `config` on `batch`."""
  return SiameseGANReference(config, batch)
