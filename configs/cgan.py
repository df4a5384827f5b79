r"""Conditional GAN (pix2pix): sketch -> face photo.

Real paired data (Kaggle "Person Face Sketches", or CUFS), 256 px:
  python -m jaxgen.main --config=configs/cgan.py --workdir=runs/cgan \
      --config.data.root=PATH/TO/person_face_sketches
CUFS at 128 px with CPU-sized nets, the recipe of the README's Results
(`cufs`: root ../shared/data/cufs beside the repository unless root= is
given, and a stratified validation split, below):
  python -m jaxgen.main --config=configs/cgan.py:cufs,res=128,steps=1600 \
      --workdir=runs/cgan_cufs --config.model.g_width=16 \
      --config.model.d_width=16 --config.model.max_width=128
Validation split of a paired folder (`split=`, i.e. data.val_split): "folder"
(the default) evaluates on its val/ folder as it is; "stratified" pools
train/ and val/ and holds out data.val_fraction of EVERY file-name subset
(the text before a name's first digit: CUFS's cuhk_NN CUHK-student faces and
ar_NNN AR faces; names without such a prefix form one subset), chosen by a
hash of the file name, and trains on the rest (jaxgen/data/paired.py). CUFS's
val/ holds 23 AR pairs only, so "folder" validation never sees a
CUHK-student face; `cufs` therefore defaults to "stratified" with
val_fraction 0.15 (31 of the 211 pairs: 18 AR, 13 CUHK-student);
`cufs,split=folder` gives back the val/ folder.
Embedded procedural faces, CPU minutes (64 px):
  python -m jaxgen.main --config=configs/cgan.py:demo --workdir=runs/cgan_demo
Label-conditioned (label embedding as extra input channels of G and D); real
data: photos in class sub-folders, sketched on the fly, e.g. CIFAR cat/dog:
  python -m jaxgen.main --config=configs/cgan.py:labels --workdir=runs/cgl \
      --config.data.root=../shared/data/cifar10_catdog
  (its :demo uses the procedural faces, labelled dark/light hair; check it
  with configs/classifier.py and python -m jaxgen.tasks.classifier)
  A generator that follows the requested label (README "Results", 96% on
  CIFAR cats/dogs) trains with label swapping and an auxiliary classifier
  that starts from a trained classifier run (jaxgen/tasks/label_following.py):
  python -m jaxgen.main --config=configs/classifier.py --workdir=runs/aux \
      --config.data.root=../shared/data/cifar10_catdog --config.seed=1 \
      --config.model.width=64 --config.model.max_width=512  # D's widths.
  python -m jaxgen.main --config=configs/cgan.py:labels --workdir=runs/cgl \
      --config.data.root=../shared/data/cifar10_catdog \
      --config.model.label_injection=projection --config.gan.label_swap=0.5 \
      --config.gan.aux_classifier=5 --config.gan.aux_classifier_init=runs/aux
Sketch-encoder generator (100-d code + noise z, no skips):
  python -m jaxgen.main --config=configs/cgan.py:encoder,demo --workdir=...
Options after the colon: demo, tiny (for tests), bench (full-size nets on
the procedural faces, for benchmarks/bench.py), labels, encoder, cufs,
res=N, steps=N, root=PATH, split=folder|stratified.
"""

import ml_collections

from jaxgen import configlib, perceptual
from jaxgen.data import paired
from jaxgen.data import paired_datasets

# CUFS beside the repository (../shared/data/cufs), for the `cufs` option.
CUFS_ROOT = configlib.shared_data(__file__, "cufs")

# The variants benchmarks/bench.py runs by default (pix2pix at 128 and 256).
BENCH_ARGS = ("bench,res=128", "bench,res=256")


def _patch_layers(res):
  """PatchGAN depth: 70x70 patches from 128 px up, 34x34 at 32-64 px."""
  return 3 if res >= 128 else (2 if res >= 32 else 1)


def get_config(arg=None):
  """Returns the cGAN config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, bench=False,
                            labels=False, encoder=False, cufs=False, res=0,
                            steps=0, root="", split="")
  procedural = arg.demo or arg.tiny or arg.bench
  if arg.cufs and (procedural or arg.labels):
    raise ValueError("Config option 'cufs' (the CUFS paired folder) does not "
                     "go with demo, tiny, bench or labels.")
  res = arg.res or (16 if arg.tiny else 64 if arg.demo else
                    32 if arg.labels else 256)
  c = ml_collections.ConfigDict()
  c.task = "cgan"
  c.seed = 0
  num_classes = 2 if arg.labels else 0
  if procedural:
    c.data = paired_datasets.data_config("procedural_faces", res,
                                         num_classes=num_classes)
  elif arg.labels:
    c.data = paired_datasets.data_config("sketchified_folder", res, arg.root,
                                         num_classes=num_classes)
  else:
    c.data = paired_datasets.data_config(
        "paired_folder", res, arg.root or (CUFS_ROOT if arg.cufs else ""))
    if arg.cufs:
      c.data.update(val_split="stratified", val_fraction=0.15)
  if arg.split:
    paired.check_val_split(arg.split)
    if c.data.name != "paired_folder":
      raise ValueError("Config option 'split' applies to paired folders "
                       "only (not to demo, tiny, bench or labels).")
    c.data.val_split = arg.split
  c.model = ml_collections.ConfigDict(dict(
      generator="encoder" if arg.encoder else "unet",  # Or "unet".
      g_width=64,          # Generator channels at full resolution; x2/level.
      d_width=64,          # PatchGAN channels of the first block.
      max_width=512,
      depth=0,             # U-Net levels; 0 = log2(res), down to 1x1.
      dropout=0.5,         # U-Net decoder dropout (the noise of pix2pix)...
      num_dropout=3,       # ...in this many inner decoder blocks.
      n_layers=_patch_layers(res),  # PatchGAN stride-2 blocks (3: 70x70).
      code_dim=100,        # Encoder generator: sketch code size...
      z_dim=100,           # ...and noise size.
      label_dim=8,         # Label embedding channels (labels variant).
      # Labels variant: "concat" (label channels at the G and D inputs) or
      # "projection" (projection discriminator + class-conditional norms in
      # the generator's decoder; see jaxgen/tasks/cgan.py).
      label_injection="concat",
      dtype="auto",        # bfloat16 compute on GPU/TPU; or float32/bfloat16.
      upsample_impl="auto",
      downsample_impl="auto",
  ))
  c.gan = configlib.gan_defaults(
      loss="bce", l1_weight=100.0,  # l1_weight: lambda of the L1 term.
      # L1 on early FID-Inception features of G(sketch) vs the photo
      # (jaxgen/perceptual.py; > 0 needs the evaluation weights); 0 = off.
      perceptual_weight=0.0, perceptual_layers=perceptual.DEFAULT_LAYERS,
      # Labels variant (jaxgen/tasks/label_following.py): the probability
      # that an example asks G for another class, and the weight of an
      # image-only classifier's loss on G's outputs; 0 = off; the workdir of
      # a classifier run that classifier starts from ("" = random init).
      label_swap=0.0, aux_classifier=0.0, aux_classifier_init="")
  # "linear": constant, then linear decay to 0 from decay_start (pix2pix);
  # "plateau": reduce on plateau of the training L1 (see jaxgen/tasks/cgan).
  plateau = dict(plateau_factor=0.5, plateau_patience=5, plateau_cooldown=0,
                 plateau_window=100, plateau_min_scale=0.01,
                 plateau_rtol=1e-4)
  c.g_optim = configlib.adam(lr=2e-4, b1=0.5, b2=0.999, schedule="linear",
                             decay_start=0.5, **plateau)
  c.d_optim = configlib.adam(lr=5e-5, b1=0.5, b2=0.999, schedule="linear",
                             decay_start=0.5, **plateau)
  # The auxiliary classifier of gan.aux_classifier: a classifier's pace
  # (configs/classifier.py), not D's slow one, so that it knows the
  # classes before G can exploit its mistakes.
  c.aux_optim = configlib.adam(lr=1e-3, b1=0.9, b2=0.999)
  # FID/KID of the generated photos against the test photos, off unless
  # fid_every > 0; best_metric="eval/fid" then keeps the best model by FID.
  c.eval = configlib.fid_defaults()
  c.train = configlib.train_defaults(
      batch_size=8, num_steps=100_000, log_every=100, eval_every=0,
      sample_every=0, checkpoint_every=0, num_samples=8,
      best_metric="eval/l1", best_mode="min")
  if arg.demo:
    c.data.update(num_train=2000, num_test=64)
    # Narrow nets, sized for CPU minutes.
    c.model.update(g_width=16, d_width=16, max_width=128)
    c.train.update(batch_size=8, num_steps=1500, log_every=50)
  if arg.tiny:
    c.data.update(num_train=16, num_test=8)
    c.model.update(g_width=4, d_width=4, max_width=8, code_dim=8, z_dim=4,
                   label_dim=2)
    c.train.update(batch_size=4, num_steps=6, log_every=2, eval_every=3,
                   eval_batches=1, sample_every=3, num_samples=4,
                   checkpoint_every=3, data_threads=0)
  if arg.cufs:
    # 180 training pairs are 22 steps of 8 per epoch: evaluate (and keep
    # the best model) every epoch, but write a sample grid and the latest
    # checkpoint every ~9 epochs, not at every epoch end.
    c.train.update(sample_every=200, checkpoint_every=200)
    # DiffAugment before every D call: on these 180 pairs it raised the
    # held-out SSIM from 0.642 to 0.680 (mean of two seeds, README
    # "Results"); `--config.gan.diffaug=` turns it off.
    c.gan.diffaug = "color,translation,cutout"
  if arg.steps:
    c.train.num_steps = arg.steps
  return c
