"""PyTorch reference of the cGAN (pix2pix) train step.

Mirrors jaxgen/models/unet.py (UNet, EncoderGenerator, LabelChannels),
jaxgen/models/patchgan.py (PatchGAN) and CGANTask.train_step of
jaxgen/tasks/cgan.py, NCHW:

  fake = G(sketch[, label][, z])             train mode, dropout, once a step
  D:   0.5 * [adv(D(s, y), real) + adv(D(s, fake.detach()), fake)], Adam
  G:   adv(D(s, fake), real) + l1_weight * |fake - y|, against the updated D
       (D in train mode, its statistics updates dropped, no D weight grads)

Both networks are BatchNorm models (flax momentum 0.9 = torch 0.1, eps
1e-5); the PatchGAN sees the channel concatenation of sketch and image.
`model.dtype` "auto" is bfloat16 on GPU (torch.autocast) as in jaxgen; the
outputs and losses are float32. The batch's random crop/flip happen in
jaxgen's data pipeline, not in the step: `make` centre-crops the stored
batch to `data.crop_size` once. The step's cheap extra metrics (D
sigmoids, learning rates, the L1 "value") are not computed.

`Adam`, `device` and `to_nchw` come from the VAE reference, the adversarial
losses from the GAN reference; `frozen_stats` is shared with the Siamese one.
"""

import contextlib

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from benchmarks.torch_ref.gan import gan_d_loss as d_adv
from benchmarks.torch_ref.gan import gan_g_loss as g_adv
from benchmarks.torch_ref.common import Adam, autocast, autocast_dtype
from benchmarks.torch_ref.common import device, to_nchw
from jaxgen.models.unet import level_width, unet_depth


def center_crop(x, size):
  """Centre crop of NHWC numpy images to `size` (no-op if already there)."""
  x = np.asarray(x, np.float32)
  top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
  return x[:, top:top + size, left:left + size]


def bn(channels) -> nn.BatchNorm2d:
  """flax nn.BatchNorm(momentum=0.9) (eps 1e-5) in torch terms."""
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def norm_layer(kind, channels) -> nn.Module:
  """layers.make_norm in torch terms: "batch", "instance" (InstanceNorm2d
  defaults: no affine parameters, no running statistics) or "none"."""
  if kind == "batch":
    return bn(channels)
  if kind == "instance":
    return nn.InstanceNorm2d(channels, eps=1e-5, affine=False)
  if kind == "none":
    return nn.Identity()
  raise ValueError(f"Unknown norm {kind!r}; valid: batch, instance, none.")


@contextlib.contextmanager
def frozen_stats(*modules):
  """Train-mode BatchNorm (batch statistics) that keeps its running stats.

  jaxgen runs networks in train mode but discards the statistics updates
  where a step does not keep them (D during the G update, G while making
  the D step's fakes); momentum 0 leaves the running averages unchanged.
  """
  norms = [m for mod in modules for m in mod.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]  # pylint: disable=protected-access
  saved = [m.momentum for m in norms]
  for m in norms:
    m.momentum = 0.0
  try:
    yield
  finally:
    for m, s in zip(norms, saved):
      m.momentum = s


class LabelChannels(nn.Module):
  """unet.LabelChannels: a class embedding appended as constant channels."""

  def __init__(self, num_classes, features):
    super().__init__()
    self.embed = nn.Embedding(num_classes, features)

  def forward(self, x, label):
    emb = self.embed(label)[:, :, None, None].to(x.dtype)
    return torch.cat([x, emb.expand(-1, -1, x.shape[2], x.shape[3])], 1)


def _label_layer(num_classes, m):
  return LabelChannels(num_classes, m.label_dim) if num_classes else None


class UNet(nn.Module):
  """unet.UNet (use_skips=True): down to 1x1, skips, dropout, tanh."""

  def __init__(self, in_ch, out_ch, res, m, num_classes):
    super().__init__()
    depth = m.depth or unet_depth(res)
    if res % 2 ** depth:
      raise ValueError(f"Input {res} is not divisible by 2**depth.")
    self.label = _label_layer(num_classes, m)
    c = in_ch + (m.label_dim if num_classes else 0)
    self.down, self.dnorm, widths = nn.ModuleList(), nn.ModuleList(), []
    for i in range(depth):
      plain = i == 0 or i == depth - 1  # No norm: first block, 1x1 bottleneck.
      w = level_width(m.g_width, m.max_width, i)
      self.down.append(nn.Conv2d(c, w, 4, 2, 1, bias=plain))
      self.dnorm.append(nn.Identity() if plain else bn(w))
      widths.append(w)
      c = w
    self.up, self.unorm = nn.ModuleList(), nn.ModuleList()
    for j in range(depth - 1):
      w = widths[depth - 2 - j]
      self.up.append(nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False))
      self.unorm.append(bn(w))
      c = 2 * w  # Concatenated with the skip of the same level.
    self.use_dropout = [1 <= j <= m.num_dropout and m.dropout > 0
                        for j in range(depth - 1)]
    self.dropout = nn.Dropout(m.dropout)
    self.up0 = nn.ConvTranspose2d(c, out_ch, 4, 2, 1)

  def forward(self, x, label=None, z=None):
    del z  # Dropout is the U-Net's noise.
    if self.label is not None:
      x = self.label(x, label)
    skips = []
    for conv, norm in zip(self.down, self.dnorm):
      x = F.leaky_relu(norm(conv(x)), 0.2)
      skips.append(x)
    skips.pop()
    for j, (conv, norm) in enumerate(zip(self.up, self.unorm)):
      x = norm(conv(x))
      if self.use_dropout[j]:
        x = self.dropout(x)
      x = torch.cat([F.relu(x), skips[-1 - j]], 1)
    return torch.tanh(self.up0(x).float())


class EncoderGenerator(nn.Module):
  """unet.EncoderGenerator: sketch -> code, [code, z] -> image, no skips."""

  def __init__(self, in_ch, out_ch, res, m, num_classes):
    super().__init__()
    levels = unet_depth(res) - 2  # Down to (and up from) 4x4.
    if levels < 1:
      raise ValueError(f"EncoderGenerator needs inputs of at least 8x8, got "
                       f"{res}.")
    self.label = _label_layer(num_classes, m)
    c = in_ch + (m.label_dim if num_classes else 0)
    self.down, self.dnorm = nn.ModuleList(), nn.ModuleList()
    for i in range(levels):
      w = level_width(m.g_width, m.max_width, i)
      self.down.append(nn.Conv2d(c, w, 4, 2, 1, bias=i == 0))
      self.dnorm.append(bn(w) if i else nn.Identity())
      c = w
    self.code = nn.Linear(4 * 4 * c, m.code_dim)
    self.top = c
    self.project = nn.Linear(m.code_dim + m.z_dim, 4 * 4 * c, bias=False)
    self.pnorm = bn(c)
    self.up, self.unorm = nn.ModuleList(), nn.ModuleList()
    for level in reversed(range(levels - 1)):
      w = level_width(m.g_width, m.max_width, level)
      self.up.append(nn.ConvTranspose2d(c, w, 4, 2, 1, bias=False))
      self.unorm.append(bn(w))
      c = w
    self.up0 = nn.ConvTranspose2d(c, out_ch, 4, 2, 1)

  def forward(self, x, label=None, z=None):
    if self.label is not None:
      x = self.label(x, label)
    for conv, norm in zip(self.down, self.dnorm):
      x = F.leaky_relu(norm(conv(x)), 0.2)
    h = self.code(x.flatten(1))
    h = torch.cat([h, z.to(h.dtype)], 1)
    h = self.project(h).view(h.shape[0], self.top, 4, 4)
    h = F.relu(self.pnorm(h))
    for conv, norm in zip(self.up, self.unorm):
      h = F.relu(norm(conv(h)))
    return torch.tanh(self.up0(h).float())


class PatchGAN(nn.Module):
  """patchgan.PatchGAN on concat(condition, image[, label channels]), or on
  the image alone when the condition is None (CycleGAN).

  As jaxgen (and pix2pix's NLayerDiscriminator), convolutions followed by
  BatchNorm have no bias; with "instance" or "none" every one has.
  """

  def __init__(self, in_ch, m, num_classes, norm="batch"):
    super().__init__()
    self.label = _label_layer(num_classes, m)
    c = in_ch + (m.label_dim if num_classes else 0)
    bias = norm != "batch"
    layers = []
    for i in range(m.n_layers):
      w = level_width(m.d_width, m.max_width, i)
      layers += [nn.Conv2d(c, w, 4, 2, 1, bias=i == 0 or bias)]
      layers += [norm_layer(norm, w)] if i else []
      layers += [nn.LeakyReLU(0.2)]
      c = w
    w = level_width(m.d_width, m.max_width, m.n_layers)
    layers += [nn.Conv2d(c, w, 4, 1, 1, bias=bias), norm_layer(norm, w),
               nn.LeakyReLU(0.2), nn.Conv2d(w, 1, 4, 1, 1)]
    self.net = nn.Sequential(*layers)

  def forward(self, condition, image, label=None):
    if condition is None:
      x = image
    else:
      x = torch.cat([condition, image.to(condition.dtype)], 1)
    if self.label is not None:
      x = self.label(x, label)
    return self.net(x)[:, 0].float()


class CGANReference:
  """One CGANTask.train_step on a stored batch (see the module docstring)."""

  def __init__(self, config, batch):
    m, self.gan = config.model, config.gan
    if self.gan.d_steps > 1 and self.gan.g_steps > 1:
      raise ValueError("Set at most one of gan.d_steps and gan.g_steps > 1.")
    for opt in (config.g_optim, config.d_optim):
      if opt.get("schedule") == "plateau":
        raise NotImplementedError(
            "No PyTorch reference for the 'plateau' schedule (optax "
            "reduce_on_plateau) of jaxgen/tasks/cgan.py; set "
            "g_optim/d_optim.schedule to 'linear' or 'constant'.")
    if m.generator not in ("unet", "encoder"):
      raise ValueError(f"Unknown model.generator {m.generator!r}.")
    self.dev = dev = device()
    res = config.data.get("crop_size", 0) or batch["sketch"].shape[1]
    # Already in [-1, 1] (jaxgen/data/paired_datasets.py).
    self.sketch = to_nchw(center_crop(batch["sketch"], res), dev)
    self.photo = to_nchw(center_crop(batch["photo"], res), dev)
    num_classes = int(config.data.get("num_classes", 0))
    self.label = (torch.as_tensor(np.asarray(batch["label"]), dtype=torch.long,
                                  device=dev) if num_classes else None)
    self.z_dim = m.z_dim if m.generator == "encoder" else 0
    sc, pc = self.sketch.shape[1], self.photo.shape[1]
    gen_cls = UNet if m.generator == "unet" else EncoderGenerator
    self.gen = gen_cls(sc, pc, res, m, num_classes).to(dev).train()
    self.disc = PatchGAN(sc + pc, m, num_classes).to(dev).train()
    steps = config.train.num_steps
    self.g_opt = Adam(self.gen.parameters(), config.g_optim,
                      steps // max(1, self.gan.d_steps))
    self.d_opt = Adam(self.disc.parameters(), config.d_optim,
                      steps // max(1, self.gan.g_steps))
    self.dtype = autocast_dtype(m.get("dtype", "auto"), dev)
    self.count = 0

  def parameters(self):
    return list(self.gen.parameters()) + list(self.disc.parameters())

  def _autocast(self):
    return autocast(self.dev, self.dtype)

  def step(self) -> float:
    gan, kind = self.gan, self.gan.loss
    # CGANTask._maybe: which updates this step applies (both by default).
    apply_d = gan.g_steps <= 1 or self.count % gan.g_steps == 0
    apply_g = gan.d_steps <= 1 or self.count % gan.d_steps == gan.d_steps - 1
    self.count += 1
    z = (torch.randn(self.sketch.shape[0], self.z_dim, device=self.dev)
         if self.z_dim else None)
    # The one generator forward; its statistics are kept if G is updated.
    with self._autocast(), torch.set_grad_enabled(apply_g), (
        contextlib.nullcontext() if apply_g else frozen_stats(self.gen)):
      fake = self.gen(self.sketch, self.label, z)

    # D on (sketch, real) then (sketch, detached fake); jaxgen computes the
    # gradients even on steps where it does not apply them.
    self.disc.requires_grad_(True)
    with self._autocast(), (contextlib.nullcontext() if apply_d
                            else frozen_stats(self.disc)):
      real_logits = self.disc(self.sketch, self.photo, self.label)
      fake_logits = self.disc(self.sketch, fake.detach(), self.label)
    d_loss = 0.5 * d_adv(real_logits, fake_logits, kind)
    self.d_opt.zero_grad()
    d_loss.backward()
    if apply_d:
      self.d_opt.step()

    # G against the updated D: gradients reach the fake (and G) only.
    self.disc.requires_grad_(False)
    if not apply_g:
      fake = fake.detach().requires_grad_()
    with self._autocast(), frozen_stats(self.disc):
      logits = self.disc(self.sketch, fake, self.label)
    g_loss = (g_adv(logits, kind) +
              gan.l1_weight * torch.mean(torch.abs(fake - self.photo)))
    if apply_g:
      self.g_opt.zero_grad()
      g_loss.backward()
      self.g_opt.step()
    else:
      torch.autograd.grad(g_loss, fake)  # jaxgen's d(loss)/d(fake).
    return g_loss.item()


def make(config, batch) -> CGANReference:
  """The cGAN reference for `config` on `batch` (see benchmarks/torch_ref)."""
  return CGANReference(config, batch)
