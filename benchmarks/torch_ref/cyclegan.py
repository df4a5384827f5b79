"""PyTorch reference of the CycleGAN train step.

Mirrors jaxgen/models/resnet.py (ResnetGenerator), jaxgen/models/patchgan.py
(PatchGAN with instance norm, no condition), jaxgen/tasks/image_pool.py and
CycleGANTask.train_step of jaxgen/tasks/cyclegan.py, NCHW, written as the
authors' PyTorch implementation (pytorch-CycleGAN-and-pix2pix) does it:

  forward: fake_b = G_AB(a), rec_a = G_BA(fake_b),
           fake_a = G_BA(b), rec_b = G_AB(fake_a)
  G step (D_A, D_B requires_grad False), one Adam over both generators:
    adv(D_B(fake_b)) + adv(D_A(fake_a)) + lambda_a |rec_a - a|
    + lambda_b |rec_b - b| + identity * (lambda_b |G_AB(rgb(b)) - b|
    + lambda_a |G_BA(luma(a)) - a|)
  D step, one Adam over both discriminators:
    0.5 [adv(D_A(a), real) + adv(D_A(pool_A(fake_a)), fake)], D_B alike.

Naming follows jaxgen: D_A judges domain A (photos), D_B domain B; the
authors' code calls these D_B and D_A. The identity inputs use jaxgen's
channel conversion (`to_channels`: ITU-R 601 luma or repeated grey). The
image pools are the authors' ImagePool (a Python list, per-image swap with
probability `pool.swap_prob`, drawn from Python's `random`). `model.dtype`
"auto" is bfloat16 on GPU (torch.autocast), as in jaxgen. The step's
learning-rate metrics are not computed. The PatchGAN, the norm layers and
the adversarial losses are the cGAN and GAN references'.
"""

import itertools
import random

import torch
from torch import nn

from benchmarks.torch_ref.cgan import PatchGAN, center_crop, norm_layer
from benchmarks.torch_ref.common import Adam, autocast, autocast_dtype
from benchmarks.torch_ref.common import device, to_nchw
from benchmarks.torch_ref.gan import gan_d_loss as d_adv
from benchmarks.torch_ref.gan import gan_g_loss as g_adv
from jaxgen.tasks.gan_base import updates_per_network

NORMS = ("instance", "none")


def to_channels(x, channels):
  """cyclegan.to_channels on NCHW: luma (ITU-R 601) or repeated grey."""
  if x.shape[1] == channels:
    return x
  if channels == 1:
    w = x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return torch.sum(x[:, :3] * w, 1, keepdim=True)
  return x[:, :1].repeat(1, channels, 1, 1)


class ResnetBlock(nn.Module):
  """x + [ReflectPad 1, Conv 3x3, norm, ReLU, ReflectPad 1, Conv 3x3, norm]."""

  def __init__(self, dim, norm):
    super().__init__()
    self.conv_block = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm_layer(norm, dim),
        nn.ReLU(True),
        nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm_layer(norm, dim))

  def forward(self, x):
    return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
  """resnet.ResnetGenerator: 7x7 stem, 2 downs, residual blocks, 2 ups, 7x7.

  Every convolution has a bias (the norm is instance or none).
  """

  def __init__(self, in_ch, out_ch, m):
    super().__init__()
    ngf, norm = m.g_width, m.norm
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7),
              norm_layer(norm, ngf), nn.ReLU(True)]
    for i in range(2):
      c = ngf * 2 ** i
      layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
                 norm_layer(norm, 2 * c), nn.ReLU(True)]
    layers += [ResnetBlock(4 * ngf, norm) for _ in range(m.num_blocks)]
    for i in range(2):
      c = ngf * 2 ** (2 - i)
      layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1,
                                    output_padding=1),
                 norm_layer(norm, c // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_ch, 7)]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return torch.tanh(self.model(x).float())


class ImagePool:
  """The authors' history of fakes (see jaxgen/tasks/image_pool.py)."""

  def __init__(self, pool_size, swap_prob=0.5, seed=0):
    self.pool_size = pool_size
    self.swap_prob = swap_prob
    self.rng = random.Random(seed)
    self.images = []

  def query(self, images):
    """Returns the batch for the discriminator, updating the pool."""
    if self.pool_size == 0:
      return images
    out = []
    for image in images:
      image = torch.unsqueeze(image.data, 0)
      if len(self.images) < self.pool_size:
        self.images.append(image)
        out.append(image)
      elif self.rng.uniform(0, 1) < self.swap_prob:
        i = self.rng.randint(0, self.pool_size - 1)
        out.append(self.images[i].clone())
        self.images[i] = image
      else:
        out.append(image)
    return torch.cat(out, 0)


def set_requires_grad(nets, requires_grad):
  """Freezes (False) or unfreezes the parameters of every module in `nets`."""
  for net in nets:
    net.requires_grad_(requires_grad)


class CycleGANReference:
  """One CycleGANTask.train_step on a stored batch (see the module
  docstring)."""

  def __init__(self, config, batch):
    m, gan = config.model, config.gan
    if m.generator != "resnet":
      raise NotImplementedError(
          f"The PyTorch CycleGAN reference has the ResNet generator only, got "
          f"model.generator={m.generator!r}; set it to 'resnet'.")
    if m.norm not in NORMS:
      raise ValueError(f"Unknown model.norm {m.norm!r}; valid: {NORMS}.")
    if gan.d_steps != 1 or gan.g_steps != 1:
      raise NotImplementedError(
          "The PyTorch CycleGAN reference mirrors gan.d_steps = gan.g_steps "
          f"= 1 only, got d_steps={gan.d_steps}, g_steps={gan.g_steps}.")
    self.kind, self.loss = gan.loss, config.loss
    self.dev = dev = device()
    res = config.data.crop_size
    # Already in [-1, 1] and cropped by the data pipeline.
    self.real_a = to_nchw(center_crop(batch["a"], res), dev)
    self.real_b = to_nchw(center_crop(batch["b"], res), dev)
    ca, cb = self.real_a.shape[1], self.real_b.shape[1]
    self.g_ab = ResnetGenerator(ca, cb, m).to(dev).train()
    self.g_ba = ResnetGenerator(cb, ca, m).to(dev).train()
    self.d_a = PatchGAN(ca, m, 0, norm=m.norm).to(dev).train()
    self.d_b = PatchGAN(cb, m, 0, norm=m.norm).to(dev).train()
    g_updates, d_updates = updates_per_network(gan, config.train.num_steps)
    self.g_opt = Adam(itertools.chain(self.g_ab.parameters(),
                                      self.g_ba.parameters()),
                      config.g_optim, g_updates)
    self.d_opt = Adam(itertools.chain(self.d_a.parameters(),
                                      self.d_b.parameters()),
                      config.d_optim, d_updates)
    self.pool_a = ImagePool(config.pool.size, config.pool.swap_prob,
                            config.seed)
    self.pool_b = ImagePool(config.pool.size, config.pool.swap_prob,
                            config.seed + 1)
    self.dtype = autocast_dtype(m.get("dtype", "auto"), dev)

  def parameters(self):
    return [p for net in (self.g_ab, self.g_ba, self.d_a, self.d_b)
            for p in net.parameters()]

  def _g_loss(self, fake_a, fake_b, rec_a, rec_b):
    a, b, cfg = self.real_a, self.real_b, self.loss
    l1 = lambda x, y: torch.mean(torch.abs(x - y))
    loss = (g_adv(self.d_b(None, fake_b), self.kind) +
            g_adv(self.d_a(None, fake_a), self.kind) +
            cfg.lambda_a * l1(rec_a, a) + cfg.lambda_b * l1(rec_b, b))
    if cfg.identity > 0:
      idt_b = self.g_ab(to_channels(b, a.shape[1]))
      idt_a = self.g_ba(to_channels(a, b.shape[1]))
      loss = loss + cfg.identity * (cfg.lambda_b * l1(idt_b, b) +
                                    cfg.lambda_a * l1(idt_a, a))
    return loss

  def _d_loss(self, net, real, fake):
    return 0.5 * d_adv(net(None, real), net(None, fake.detach()), self.kind)

  def step(self) -> float:
    a, b = self.real_a, self.real_b
    with autocast(self.dev, self.dtype):
      fake_b = self.g_ab(a)
      rec_a = self.g_ba(fake_b)
      fake_a = self.g_ba(b)
      rec_b = self.g_ab(fake_a)
    # Generators against the current discriminators (no D weight grads).
    set_requires_grad([self.d_a, self.d_b], False)
    with autocast(self.dev, self.dtype):
      g_loss = self._g_loss(fake_a, fake_b, rec_a, rec_b)
    self.g_opt.zero_grad()
    g_loss.backward()
    self.g_opt.step()
    set_requires_grad([self.d_a, self.d_b], True)
    # Discriminators on the real images and the pooled, detached fakes.
    with autocast(self.dev, self.dtype):
      d_loss = (self._d_loss(self.d_a, a, self.pool_a.query(fake_a)) +
                self._d_loss(self.d_b, b, self.pool_b.query(fake_b)))
    self.d_opt.zero_grad()
    d_loss.backward()
    self.d_opt.step()
    return (g_loss.detach() + d_loss.detach()).item()


def make(config, batch) -> CycleGANReference:
  """The CycleGAN reference for `config` on `batch` (see package)."""
  return CycleGANReference(config, batch)
