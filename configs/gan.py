r"""DCGAN on handwritten signatures.

Real scans (one sub-folder per signer):
  python -m jaxgen.main --config=configs/gan.py --workdir=runs/gan \
      --config.data.root=../shared/data/signatures
Embedded procedural signatures, CPU minutes:
  python -m jaxgen.main --config=configs/gan.py:demo --workdir=runs/gan_demo
Real scans train with DiffAugment (measured in the README's "Results").
Options after the colon: demo, tiny (for tests), bench (full-size model on
the procedural signatures, for benchmarks/bench.py), resnet (residual G and
D, jaxgen/models/resgan.py), res=64|128, steps=N.
"""

import ml_collections

from jaxgen import configlib


def get_config(arg=None):
  """Returns the DCGAN config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, bench=False, res=64,
                            steps=0, resnet=False)
  c = ml_collections.ConfigDict()
  c.task = "gan"
  c.seed = 0
  c.data = configlib.signature_data(demo=arg.demo or arg.tiny or arg.bench,
                                   res=arg.res)
  c.data.augment.update(scale=0.05, rotation=3.0, translation=0.03)
  c.model = ml_collections.ConfigDict(dict(
      z_dim=100,
      g_width=64,         # Generator channels at the last block; x2 per level.
      d_width=64,         # Discriminator channels at the first block.
      d_norm="batch",     # D normalisation: "batch" (DCGAN), "layer", "none"
                          # (a WGAN-GP critic: jaxgen/models/dcgan.py).
      # "dcgan" or "resnet": residual G and D blocks (jaxgen/models/resgan.py).
      arch="dcgan",
      max_width=512,
      upsample_impl="auto",
      downsample_impl="auto",
  ))
  # bn_recalibrate=N: sample with BatchNorm statistics of N fixed codes
  # (jaxgen/tasks/gan.py); on in siamese_gan.py, unmeasured here.
  # truncation: sampling codes from N(0, 1) truncated to [-t, t] (0 = off;
  # jaxgen/tasks/gan.py).
  c.gan = configlib.gan_defaults(loss="bce", bn_recalibrate=0, truncation=0.0)
  if not (arg.demo or arg.tiny or arg.bench):
    # DiffAugment before every D call on the real scans: on the 274
    # training scans it lowered FID against held-out signers from 215 to
    # 172 over two seeds (README "Results"); `--config.gan.diffaug=` turns
    # it off. Off for the procedural data (unmeasured there) and the
    # PyTorch benchmarks.
    c.gan.diffaug = "color,translation,cutout"
  c.g_optim = configlib.adam(lr=2e-4, b1=0.5, b2=0.999)
  c.d_optim = configlib.adam(lr=2e-4, b1=0.5, b2=0.999)
  c.eval = configlib.fid_defaults()  # FID/KID off unless fid_every > 0.
  c.train = configlib.train_defaults(
      batch_size=64, num_steps=20_000, best_metric="eval/swd", best_mode="min")
  if arg.demo:
    # Sized for a few minutes on 2 CPU cores.
    c.model.update(g_width=16, d_width=16, max_width=128)
    c.train.update(batch_size=32, num_steps=800, log_every=50, eval_every=200,
                   sample_every=200, checkpoint_every=200)
  if arg.tiny:
    c.data.update(res=16, num_writers=6, per_writer=4)
    c.model.update(z_dim=8, g_width=4, d_width=4, max_width=8)
    c.train.update(batch_size=8, num_steps=6, log_every=2, eval_every=3,
                   eval_batches=1, sample_every=3, num_samples=4,
                   checkpoint_every=3, data_threads=0)
  if arg.resnet:
    c.model.arch = "resnet"
  if arg.steps:
    c.train.num_steps = arg.steps
  return c
