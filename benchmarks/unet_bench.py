"""pix2pix U-Net generator train step: Flax (jaxgen layers) vs PyTorch.

Both sides build the same network as pix2pix's UnetGenerator (ngf=64,
BatchNorm, dropout 0.5 in the three innermost-but-one decoder blocks):
encoder of stride-2 4x4 convs with LeakyReLU(0.2)/BatchNorm, decoder of
stride-2 4x4 transposed convs with ReLU/BatchNorm/dropout and skip concats,
tanh output; 7 levels at 128 px, 8 at 256 px. One step = forward in train
mode, L1 loss to a target, backward, Adam(2e-4, b1=0.5) update. The Flax step
is one jitted function; steps of all variants are timed interleaved and the
median is reported, since the machine may be shared.

Usage:
  python benchmarks/unet_bench.py [--size 128] [--batch 8] [--steps 5]
      [--variants auto:auto,transpose:conv]  (UpConv impl:DownConv impl)
"""

import json
import os
import sys
import time
from typing import Optional, Sequence

from absl import flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import flax.linen as nn  # pylint: disable=g-import-not-at-top
import jax
import jax.numpy as jnp
import optax
import torch

from jaxgen import backend
from jaxgen import cli
from jaxgen.models import layers


def _levels(size):
  return {128: 7, 256: 8}[size]


def _channels(num_downs, ngf=64):
  """Encoder output channels per level, outermost first."""
  return [ngf, ngf * 2, ngf * 4] + [ngf * 8] * (num_downs - 3)


class UNet(nn.Module):
  """pix2pix UnetGenerator in Flax, NHWC."""
  num_downs: int
  out_ch: int = 3
  up_impl: Optional[str] = None
  down_impl: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool = True):
    bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                              epsilon=1e-5)
    chans = _channels(self.num_downs)
    skips = []
    h = x
    for i, c in enumerate(chans):
      if i > 0:
        h = nn.leaky_relu(h, 0.2)
      # Bias only where no BatchNorm follows (outermost and innermost).
      h = layers.DownConv(c, use_bias=False, impl=self.down_impl)(h)
      if 0 < i < len(chans) - 1:
        h = bn()(h)
      skips.append(h)
    for i in reversed(range(len(chans))):
      if i < len(chans) - 1:
        h = jnp.concatenate([skips[i], h], axis=-1)
      h = nn.relu(h)
      if i == 0:
        h = layers.UpConv(self.out_ch, use_bias=True, impl=self.up_impl)(h)
        return jnp.tanh(h)
      h = layers.UpConv(chans[i - 1], use_bias=False, impl=self.up_impl)(h)
      h = bn()(h)
      if len(chans) - 4 <= i < len(chans) - 1:
        h = nn.Dropout(0.5, deterministic=not train)(h)
    raise AssertionError("unreachable")


class TorchUNet(torch.nn.Module):
  """The same network in PyTorch, NCHW."""

  def __init__(self, num_downs, in_ch=3, out_ch=3):
    super().__init__()
    tnn = torch.nn
    chans = _channels(num_downs)
    self.n = len(chans)
    self.down = tnn.ModuleList()
    self.dnorm = tnn.ModuleList()
    prev = in_ch
    for i, c in enumerate(chans):
      self.down.append(tnn.Conv2d(prev, c, 4, 2, 1, bias=False))
      self.dnorm.append(tnn.BatchNorm2d(c) if 0 < i < self.n - 1
                        else tnn.Identity())
      prev = c
    self.up = tnn.ModuleList()
    self.unorm = tnn.ModuleList()
    for i in range(self.n):
      cin = chans[i] * (1 if i == self.n - 1 else 2)
      cout = out_ch if i == 0 else chans[i - 1]
      self.up.append(tnn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=(i == 0)))
      self.unorm.append(tnn.BatchNorm2d(cout) if i > 0 else tnn.Identity())
    self.drop = tnn.Dropout(0.5)

  def forward(self, x):
    f = torch.nn.functional
    skips = []
    h = x
    for i in range(self.n):
      if i > 0:
        h = f.leaky_relu(h, 0.2)
      h = self.dnorm[i](self.down[i](h))
      skips.append(h)
    for i in reversed(range(self.n)):
      if i < self.n - 1:
        h = torch.cat([skips[i], h], 1)
      h = self.unorm[i](self.up[i](f.relu(h)))
      if i == 0:
        return torch.tanh(h)
      if self.n - 4 <= i < self.n - 1:
        h = self.drop(h)


def make_jax_step(model, x, y):
  """Returns (state, jitted step) for one generator train step."""
  variables = model.init({"params": jax.random.PRNGKey(0),
                          "dropout": jax.random.PRNGKey(1)}, x, train=False)
  tx = optax.adam(2e-4, b1=0.5, b2=0.999)
  state = (variables["params"], variables["batch_stats"],
           tx.init(variables["params"]), jax.random.PRNGKey(2))

  def step(state, x, y):
    params, stats, opt, rng = state
    rng, drop = jax.random.split(rng)

    def loss_fn(p):
      out, upd = model.apply({"params": p, "batch_stats": stats}, x,
                             train=True, rngs={"dropout": drop},
                             mutable=["batch_stats"])
      return jnp.mean(jnp.abs(out - y)), upd["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), stats, opt, rng), loss

  return state, backend.jit(step, donate_argnums=0)


def benchmark(size: int = 128, batch: int = 8, steps: int = 5,
              variants: Sequence[str] = ("auto:auto", "transpose:conv")):
  """Times the U-Net train step of each variant and PyTorch's; prints them.

  Args:
    size: image side, 128 or 256.
    batch: batch size.
    steps: timed steps (the median is reported).
    variants: "UpConv_impl:DownConv_impl" pairs.
  """
  threads = len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  nd = _levels(size)
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32)
  y = rng.uniform(-1, 1, x.shape).astype(np.float32)

  runners = {}
  for variant in variants:
    up, down = variant.split(":")
    model = UNet(nd, up_impl=up, down_impl=down)
    state, step = make_jax_step(model, jnp.asarray(x), jnp.asarray(y))
    holder = {"state": state}

    def run(step=step, holder=holder):
      holder["state"], loss = step(holder["state"], x, y)
      return float(loss)  # Blocks until the step is done.

    name = (f"jax up={layers.resolve_impl('up', up)} "
            f"down={layers.resolve_impl('down', down)}")
    runners[name] = run

  net = TorchUNet(nd)
  net.train()
  opt = torch.optim.Adam(net.parameters(), lr=2e-4, betas=(0.5, 0.999))
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
  yt = torch.from_numpy(y.transpose(0, 3, 1, 2).copy())

  def torch_run():
    opt.zero_grad(set_to_none=True)
    loss = (net(xt) - yt).abs().mean()
    loss.backward()
    opt.step()
    return loss.item()

  runners["torch"] = torch_run
  n_jax = sum(v.numel() for v in net.parameters())
  print(f"U-Net {size}px ({nd} levels, {n_jax / 1e6:.1f}M params), "
        f"batch {batch}, {threads} threads, jax {jax.__version__}, "
        f"torch {torch.__version__}")
  for run in runners.values():
    run()  # Compile / warm up.
  times = {k: [] for k in runners}
  for _ in range(steps):
    for name, run in runners.items():
      start = time.perf_counter()
      run()
      times[name].append((time.perf_counter() - start) * 1e3)
  med = {k: float(np.median(v)) for k, v in times.items()}
  for name, ms in med.items():
    ratio = med["torch"] / ms
    print(f"{name:40s} {ms:9.1f} ms/step  torch/jax = {ratio:5.2f}")
    print("JSON " + json.dumps({"size": size, "batch": batch,
                                "variant": name, "ms": round(ms, 1),
                                "torch_ms": round(med["torch"], 1),
                                "ratio": round(ratio, 3)}), flush=True)


def _define(fv, argv):
  """The flags (see the module docstring)."""
  del argv
  flags.DEFINE_integer("size", 128, "Image side: 128 or 256.", flag_values=fv)
  flags.DEFINE_integer("batch", 8, "Batch size.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("steps", 5, "Timed steps.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_list("variants", ["auto:auto", "transpose:conv"],
                    "Comma-separated UpConv_impl:DownConv_impl pairs.",
                    flag_values=fv)
  flags.register_validator("size", lambda size: size in (128, 256),
                           "--size must be 128 or 256", flag_values=fv)
  flags.register_validator(
      "variants", lambda pairs: all(p.count(":") == 1 for p in pairs),
      "--variants must be UpConv_impl:DownConv_impl pairs", flag_values=fv)


def main(argv=None) -> int:
  """The command line (module docstring); returns the exit status."""
  return cli.run(lambda fv: benchmark(fv.size, fv.batch, fv.steps,
                                      fv.variants), _define, argv, __doc__)


if __name__ == "__main__":
  sys.exit(main())
