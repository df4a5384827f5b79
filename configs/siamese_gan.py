r"""DCGAN with a Siamese discriminator on CIFAR-10 cats and dogs.

Real data (an image folder, or TFDS cifar10 if already prepared):
  python -m jaxgen.main --config=configs/siamese_gan.py --workdir=runs/sgan \
      --config.data.root=../shared/data/cifar10_catdog
  python -m jaxgen.main --config=configs/siamese_gan.py \
      --workdir=runs/sgan_tfds --config.data.source=tfds
Baseline without the similarity head (plain DCGAN discriminator):
  python -m jaxgen.main --config=configs/siamese_gan.py:plain \
      --workdir=runs/sgan_plain --config.data.root=../shared/data/cifar10_catdog
CPU demo (minutes) on synthetic coloured shapes (no files needed), and on
../shared/data/cifar10_catdog beside the repository (`cifar`):
  python -m jaxgen.main --config=configs/siamese_gan.py:demo \
      --workdir=runs/sgan_demo
  python -m jaxgen.main --config=configs/siamese_gan.py:demo,cifar \
      --workdir=runs/sgan_demo_cifar
Class-conditional (G asked for cat or dog, a projection discriminator;
jaxgen/tasks/siamese_gan.py), sampled per class with jaxgen-sample --label:
  python -m jaxgen.main --config=configs/siamese_gan.py:cond \
      --workdir=runs/sgan_cond --config.data.root=../shared/data/cifar10_catdog
With AC-GAN's class head on the discriminator as well (`cond,ac`):
  python -m jaxgen.main --config=configs/siamese_gan.py:cond,ac \
      --workdir=runs/sgan_ac --config.data.root=../shared/data/cifar10_catdog
FID/KID of 5000 samples are logged every 10 epochs when the Inception
weights are installed (README "Evaluation"; otherwise one warning); the best
generator is kept by the pixel-space SWD, or by FID with
--config.train.best_metric=eval/fid (which then needs the weights).
Options after the colon: demo, cifar, tiny (tests; always synthetic), bench
(full-size nets on synthetic images, for benchmarks/bench.py), plain,
cond, ac (with cond: AC-GAN's class head on D), resnet (residual G and D,
jaxgen/models/resgan.py), ema=DECAY, steps=N, width=W (G and D widths).
"""

import ml_collections

from jaxgen import configlib
from jaxgen.data import cifar

# The cats + dogs train split of CIFAR-10 (5000 per class).
TRAIN_IMAGES = 10_000
_SHARED_FOLDER = configlib.shared_data(__file__, "cifar10_catdog")


def get_config(arg=None):
  """Returns the Siamese-GAN config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, plain=False,
                            ema=0.0, steps=0, width=0, bench=False,
                            cifar=False, cond=False, ac=False, resnet=False)
  c = ml_collections.ConfigDict()
  c.task = "siamese_gan"
  c.seed = 0
  c.data = ml_collections.ConfigDict(dict(
      name="cifar",
      # "auto": the folder at data.root if set, else TFDS cifar10 if
      # prepared; or "folder", "tfds", "synthetic" (smoke-test shapes).
      source="auto",
      root="",
      tfds_data_dir="",    # "" = the TFDS default (~/tensorflow_datasets).
      classes="cat,dog",   # CIFAR-10 names or ids; labels keep CIFAR ids.
      res=32,
      channels=3,
      flip=True,           # Random horizontal flips of training images.
      per_class=500,       # Synthetic source only: train images per class.
      seed=0,              # Synthetic source only.
  ))
  c.model = ml_collections.ConfigDict(dict(
      z_dim=100,
      g_width=64,          # Generator channels at the last block; x2 per level.
      d_width=64,          # Encoder channels at the first block.
      max_width=512,
      d_norm="batch",      # Encoder normalisation: "batch", "layer", "none".
      # "dcgan" or "resnet": residual G and D blocks (jaxgen/models/resgan.py).
      arch="dcgan",
      sim_hidden=128,      # Hidden width of the similarity head (0: linear).
      upsample_impl="auto",
      downsample_impl="auto",
      # > 0: class-conditional G and projection D over data.classes (cond).
      num_classes=0,
      # Class-conditional: per-class scale/shift after G's BatchNorms (cond).
      g_class_norm=False,
  ))
  c.siamese = ml_collections.ConfigDict(dict(
      d_sim_weight=0.0 if arg.plain else 1.0,  # lambda_D (similarity head).
      g_sim_weight=0.0 if arg.plain else 1.0,  # lambda_G (dissimilarity).
      # Class-conditional: AC-GAN's class head on D's features, trained on
      # real images (d) and asked of G's (g); 0 = off, `ac` sets both to 1.
      d_class_weight=0.0,
      g_class_weight=0.0,
  ))
  # ema=DECAY: the EMA generator for samples/eval/best (0 = off); stored
  # configs of older runs have it as model.ema_decay, which is still read.
  # bn_recalibrate: the sampling generator's BatchNorm statistics from 512
  # fixed codes (jaxgen/tasks/gan.py; README "Results" measures it).
  # truncation: sampling codes from N(0, 1) truncated to [-t, t] (0 = off).
  c.gan = configlib.gan_defaults(loss="bce", ema_decay=arg.ema,
                                 bn_recalibrate=512, truncation=0.0)
  c.g_optim = configlib.adam(lr=2e-4, b1=0.5, b2=0.999)
  c.d_optim = configlib.adam(lr=2e-4, b1=0.5, b2=0.999)
  batch_size = 64
  # Steps per epoch from the dataset size; the loop cannot know it when the
  # config is built. Checkpoints every 10 epochs, not at each epoch end.
  steps_per_epoch = TRAIN_IMAGES // batch_size  # 156
  c.train = configlib.train_defaults(
      batch_size=batch_size,
      num_steps=100 * steps_per_epoch,
      log_every=50,
      eval_every=0,        # <= 0: once per epoch.
      sample_every=0,      # A sample grid per epoch.
      checkpoint_every=10 * steps_per_epoch,
      best_metric="eval/swd",
      best_mode="min")
  # FID every 10 epochs (skipped with a warning without the weights); the
  # best generator by SWD, which needs nothing installed.
  c.eval = configlib.fid_defaults(
      fid_every=0 if arg.demo or arg.tiny else 10 * steps_per_epoch,
      fid_num=5000)
  if arg.cifar:
    c.data.update(source="folder", root=_SHARED_FOLDER)
  if arg.demo:
    if not arg.cifar:
      c.data.update(source="synthetic", root="")
    # Width 16: 1500 steps in CPU minutes.
    c.model.update(g_width=16, d_width=16, sim_hidden=64)
    c.train.update(num_steps=1500, log_every=50, eval_every=250,
                   eval_batches=8, sample_every=250, checkpoint_every=500)
  if arg.tiny:
    c.data.update(source="synthetic", root="", res=16, per_class=8)
    c.model.update(z_dim=8, g_width=4, d_width=4, max_width=8, sim_hidden=4)
    c.train.update(batch_size=8, num_steps=6, log_every=2, eval_every=3,
                   eval_batches=1, sample_every=3, num_samples=4,
                   checkpoint_every=3, data_threads=0)
  if arg.bench:
    # Full-size nets on the synthetic source (no files needed).
    c.data.update(source="synthetic", root="")
    c.eval.fid_every = 0
  if arg.cond:
    c.model.update(num_classes=len(cifar.resolve_classes(c.data.classes)),
                   g_class_norm=True)
  if arg.ac:
    if not arg.cond:
      raise ValueError("siamese_gan.py: ac (the class head) needs cond.")
    c.siamese.update(d_class_weight=1.0, g_class_weight=1.0)
  if arg.resnet:
    c.model.arch = "resnet"
  if arg.width:
    c.model.update(g_width=arg.width, d_width=arg.width)
  if arg.steps:
    c.train.num_steps = arg.steps
  return c

