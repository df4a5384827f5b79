r"""Convolutional VAE on handwritten signatures.

Real scans (one sub-folder per signer):
  python -m jaxgen.main --config=configs/vae.py --workdir=runs/vae \
      --config.data.root=../shared/data/signatures
Embedded procedural signatures, CPU minutes:
  python -m jaxgen.main --config=configs/vae.py:demo --workdir=runs/vae_demo
Options after the colon: demo, tiny (for tests), bench (full-size model on
the procedural signatures, for benchmarks/bench.py), res=64|128, steps=N,
vector (with demo: a 128-d vector code instead of the 8x8 latent map).
"""

import ml_collections

from jaxgen import configlib


def get_config(arg=None):
  """Returns the VAE config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, bench=False, res=64,
                            steps=0, vector=False)
  c = ml_collections.ConfigDict()
  c.task = "vae"
  c.seed = 0
  c.data = configlib.signature_data(demo=arg.demo or arg.tiny or arg.bench,
                                   res=arg.res)
  c.model = ml_collections.ConfigDict(dict(
      width=32,            # Channels of the first conv; doubles per level.
      max_width=256,
      latent_dim=32,       # The code's size (its channels if latent_res).
      latent_res=0,        # > 0: a latent_res x latent_res latent map.
      upsample_impl="auto",
      downsample_impl="auto",
  ))
  c.loss = ml_collections.ConfigDict(dict(
      recon="bce",         # Or "mse".
      beta=1.0,            # Weight of the KL term.
      warmup_steps=2000,   # Linear KL warm-up from 0 to beta (0 = off).
  ))
  c.optim = configlib.adam(lr=1e-3, b1=0.9, b2=0.999)
  c.eval = configlib.fid_defaults()  # FID/KID off unless fid_every > 0.
  c.train = configlib.train_defaults(
      batch_size=64, num_steps=20_000, best_metric="eval/elbo",
      best_mode="min")
  if arg.demo:
    # Sized for CPU minutes. An 8x8 map of 8-channel codes and beta 0.1
    # reconstruct the strokes legibly in 1500 steps (eval/ink_f1 ~0.7,
    # README "Results"); a 128-d vector code (`vector`) blurs them (~0.34)
    # but its prior samples keep a signature's layout, which the map's
    # independent positions do not; 32 dims and beta 1 give grey smears.
    c.model.update(width=16, max_width=128, latent_dim=8, latent_res=8)
    if arg.vector:
      c.model.update(latent_dim=128, latent_res=0)
    c.train.update(batch_size=32, num_steps=1500, log_every=50,
                   eval_every=250, sample_every=250, checkpoint_every=250)
    c.loss.update(beta=0.1, warmup_steps=200)
  if arg.tiny:
    c.data.update(res=16, num_writers=6, per_writer=4)
    c.model.update(width=4, max_width=8, latent_dim=4)
    c.loss.warmup_steps = 2
    c.train.update(batch_size=8, num_steps=6, log_every=2, eval_every=3,
                   eval_batches=1, sample_every=3, num_samples=4,
                   checkpoint_every=3, data_threads=0)
  if arg.steps:
    c.train.num_steps = arg.steps
  return c
