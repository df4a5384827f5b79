r"""Image classifier, to check what label-conditioned cGANs generate.

Trained on the same data config as `configs/cgan.py:labels` (photos and
their class labels), then compared on real and generated test photos:
  python -m jaxgen.main --config=configs/classifier.py:demo --workdir=runs/cls
  python -m jaxgen.main --config=configs/cgan.py:labels,demo \
      --workdir=runs/cgan_labels
  python -m jaxgen.tasks.classifier --classifier_workdir=runs/cls \
      --cgan_workdir=runs/cgan_labels
Real data (photos in class sub-folders, e.g. CIFAR cat/dog at 32 px):
  python -m jaxgen.main --config=configs/classifier.py --workdir=runs/cls \
      --config.data.root=../shared/data/cifar10_catdog
Options after the colon: demo, tiny (for tests), bench (full-size net on the
procedural faces, for benchmarks/bench.py), res=N, steps=N, root=PATH.
"""

import ml_collections

from jaxgen import configlib
from jaxgen.data import paired_datasets


def get_config(arg=None):
  """Returns the classifier config; see the module docstring for variants."""
  arg = configlib.parse_arg(arg, demo=False, tiny=False, bench=False, res=0,
                            steps=0, root="")
  res = arg.res or (16 if arg.tiny else 64 if arg.demo else 32)
  c = ml_collections.ConfigDict()
  c.task = "classifier"
  c.seed = 0
  if arg.demo or arg.tiny or arg.bench:
    # Must match configs/cgan.py:labels,demo so the test photos are shared.
    c.data = paired_datasets.data_config("procedural_faces", res,
                                         num_classes=2)
  else:
    c.data = paired_datasets.data_config("sketchified_folder", res, arg.root,
                                         num_classes=2)
  c.model = ml_collections.ConfigDict(dict(
      input="photo",       # Batch key classified.
      width=32,
      max_width=256,
      dropout=0.3,
      downsample_impl="auto",
  ))
  c.optim = configlib.adam(lr=1e-3, b1=0.9, b2=0.999, schedule="cosine")
  c.train = configlib.train_defaults(
      batch_size=64, num_steps=5000, log_every=100, eval_every=0,
      sample_every=0, checkpoint_every=0, num_samples=16,
      best_metric="eval/accuracy", best_mode="max")
  if arg.demo:
    c.data.update(num_train=2000, num_test=64)
    c.train.update(batch_size=32, num_steps=400, log_every=25)
  if arg.tiny:
    c.data.update(num_train=16, num_test=8)
    c.model.update(width=4, max_width=8)
    c.train.update(batch_size=4, num_steps=6, log_every=2, eval_every=3,
                   eval_batches=1, sample_every=3, num_samples=4,
                   checkpoint_every=3, data_threads=0)
  if arg.steps:
    c.train.num_steps = arg.steps
  return c
