r"""CycleGAN: face photos (A) <-> sketches (B), trained on unpaired images.

Defaults follow the PyTorch reference implementation: 256 px, ResNet-9
generators (ngf 64), 70x70 PatchGANs with instance norm, LSGAN, cycle
lambda 10, identity 0.5, pools of 50, Adam 2e-4 (0.5, 0.999), batch 1,
100 epochs at a constant rate then 100 of linear decay.

CUFS photos and sketches, pairing ignored for training (val pairs scored):
  python -m jaxgen.main --config=configs/cyclegan.py:root=../shared/data/cufs \
      --workdir=runs/cyclegan_cufs
Any two folders (e.g. CelebA photos against the CUFS sketches):
  python -m jaxgen.main --config=configs/cyclegan.py:res=128 \
      --config.data.a_root=../shared/data/celeba_10k \
      --config.data.b_root=../shared/data/cufs/train/sketches --workdir=...
CPU-sized CUFS recipe (64 px, narrow nets), as measured in the README's
Results (the stratified split below, 12 + 12 epochs):
  python -m jaxgen.main --config=configs/cyclegan.py:cpu,cufs,epochs=12 \
      --workdir=runs/cyclegan_cufs64
Paired test split of a paired layout (`split=`, i.e. data.val_split):
"folder" (default) scores its val/ pairs (CUFS: 23 AR faces only);
"stratified" trains and tests on a split of train/ + val/ holding out
data.val_fraction of every file-name subset (CUHK-student and AR alike, as
configs/cgan.py's `cufs`; jaxgen/data/paired.py). `cufs` = root
../shared/data/cufs beside the repository (unless root= is given) with the
stratified split and val_fraction 0.15:
  python -m jaxgen.main --config=configs/cyclegan.py:cpu,cufs \
      --workdir=runs/cyclegan_cufs64s
Embedded procedural faces, CPU minutes (64 px):
  python -m jaxgen.main --config=configs/cyclegan.py:demo --workdir=runs/cyc

Options after the colon: demo, tiny (for tests), bench (full-size nets on the
procedural faces, for benchmarks/bench.py), cpu (narrow 64 px nets for real
data on a CPU), res=N, blocks=N (residual blocks; default 9 at 256 px and
above, 6 below), epochs=N (constant-rate epochs; as many decay epochs follow),
root=PATH (a {train,val}/{photos,sketches} folder), cufs,
split=folder|stratified.
"""

import ml_collections

from jaxgen import configlib, perceptual
from jaxgen.data import paired
from jaxgen.data import unpaired

# CUFS beside the repository (../shared/data/cufs), for the `cufs` option.
CUFS_ROOT = configlib.shared_data(__file__, "cufs")

# The variants benchmarks/bench.py runs by default (CycleGAN-128 ResNet-6 and
# CycleGAN-256 ResNet-9, batch 1).
BENCH_ARGS = ("bench,res=128", "bench,res=256")


def get_config(arg=None):
  """Returns the CycleGAN config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, bench=False,
                            cpu=False, res=0, blocks=0, epochs=0, root="",
                            cufs=False, split="")
  procedural = arg.demo or arg.tiny or arg.bench
  if (arg.cufs or arg.split) and procedural:
    raise ValueError("Config options 'cufs' and 'split' are for a paired "
                     "folder; they do not go with demo, tiny or bench.")
  res = arg.res or (16 if arg.tiny else 64 if (arg.demo or arg.cpu) else 256)
  c = ml_collections.ConfigDict()
  c.task = "cyclegan"
  c.seed = 0
  if procedural:
    c.data = unpaired.data_config("unpaired_procedural", res)
  else:
    c.data = unpaired.data_config(
        "unpaired_folders", res,
        root=arg.root or (CUFS_ROOT if arg.cufs else ""))
    if arg.cufs:
      c.data.update(val_split="stratified", val_fraction=0.15)
  if arg.split:
    paired.check_val_split(arg.split)
    c.data.val_split = arg.split
  c.model = ml_collections.ConfigDict(dict(
      generator="resnet",    # Or "unet" (the pix2pix U-Net, instance norm).
      g_width=64,            # ngf.
      num_blocks=arg.blocks or (9 if res >= 256 else 6),
      d_width=64,            # ndf.
      max_width=512,
      n_layers=3 if res >= 128 else (2 if res >= 32 else 1),  # 3: 70x70.
      norm="instance",       # Or "none".
      dtype="auto",          # bfloat16 compute on GPU/TPU; float32 on CPU.
      upsample_impl="auto",
      downsample_impl="auto",
  ))
  c.loss = ml_collections.ConfigDict(dict(
      lambda_a=10.0,         # Cycle A -> B -> A.
      lambda_b=10.0,         # Cycle B -> A -> B.
      identity=0.5,          # Identity weight, times lambda; 0 = off.
  ))
  # perceptual_weight: L1 on early FID-Inception features of each cycle
  # reconstruction vs its input (jaxgen/perceptual.py; > 0 needs the
  # evaluation weights); 0 = off.
  c.gan = configlib.gan_defaults(
      loss="lsgan", perceptual_weight=0.0,
      perceptual_layers=perceptual.DEFAULT_LAYERS)
  c.pool = ml_collections.ConfigDict(dict(size=50, swap_prob=0.5))
  # Epochs of the data: constant for n_epochs, then linear decay to 0 over
  # n_epochs_decay; train.num_epochs is their sum (the loop turns it into
  # steps once it knows the data's size).
  c.n_epochs = arg.epochs or 100
  c.n_epochs_decay = arg.epochs or 100
  adam = dict(lr=2e-4, b1=0.5, b2=0.999, schedule="epoch_linear",
              n_epochs=c.get_ref("n_epochs"),
              n_epochs_decay=c.get_ref("n_epochs_decay"))
  c.g_optim = configlib.adam(**adam)
  c.d_optim = configlib.adam(**adam)
  # FID/KID per direction (eval/fid_BtoA: generated vs test photos;
  # eval/fid_AtoB: sketches), off unless fid_every > 0; best_metric=
  # "eval/fid_BtoA" then keeps the best model by FID.
  c.eval = configlib.fid_defaults()
  c.train = configlib.train_defaults(
      batch_size=1, num_steps=0, log_every=100, eval_every=0, sample_every=0,
      checkpoint_every=0, num_samples=4, eval_batches=-1,
      best_metric="", data_threads=2)
  if arg.tiny:  # A fixed step count, so tests can override num_steps.
    c.train.update(num_epochs=0, num_steps=8)
  else:
    c.train.num_epochs = c.get_ref("n_epochs") + c.get_ref("n_epochs_decay")
  if arg.demo:
    c.data.update(num_train=600, num_test=32)
    c.model.update(g_width=16, d_width=16, num_blocks=arg.blocks or 3)
    c.train.update(batch_size=4, log_every=50)
    c.n_epochs = arg.epochs or 5
    c.n_epochs_decay = arg.epochs or 5
  if arg.cpu:
    c.model.update(g_width=32, d_width=32, num_blocks=arg.blocks or 6)
    c.train.update(batch_size=1, log_every=100)
  if arg.tiny:
    c.data.update(num_train=8, num_test=4)
    c.model.update(g_width=4, d_width=4, num_blocks=1)
    c.pool.size = 3
    c.train.update(batch_size=2, log_every=2, eval_every=2, eval_batches=1,
                   sample_every=2, num_samples=2, checkpoint_every=2,
                   data_threads=0)
    c.n_epochs = arg.epochs or 1
    c.n_epochs_decay = arg.epochs or 1
  if arg.bench:
    c.data.update(num_train=64, num_test=8)
  if c.data.paired_eval and not arg.tiny:
    c.train.update(best_metric="eval/l1_BtoA", best_mode="min")
  return c
