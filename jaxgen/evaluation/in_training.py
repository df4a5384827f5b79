"""FID/KID during training, and the plumbing the eval CLI shares.

The train loop builds a `FIDEvaluator` with `from_config` when the config
has an `eval` group with `fid_every > 0` (see `configlib.fid_defaults`);
every `fid_every` steps (and at the last step) it compares Inception
statistics with the cached statistics of the dataset's test split:

  * generative tasks (`task.generate`): `fid_num` images generated in
    fixed-size jitted chunks against the test images: `eval/fid`,
    `eval/kid`;
  * translation tasks (`task.translations()`): per direction, the outputs
    for every test input against the test targets (e.g. generated photos
    against the real ones): `eval/fid` and `eval/kid` for a one-way task
    (pix2pix), `eval/fid_AtoB`, `eval/fid_BtoA` (and KID alike) for
    CycleGAN.

The results go through the loop's eval-metrics path, so e.g.
`config.train.best_metric = "eval/fid"` (or "eval/fid_BtoA") keeps the best
model by FID.

The same functions serve `python -m jaxgen.evaluate`: `get_extractor`
(the one place the Inception network is obtained, so tests can substitute a
small stand-in), `dataset_key`, `real_images`, `generated_images`,
`translated_images`, `reference` and `set_metrics`.

With several processes each computes the features of its share of the
images and the features are all-gathered (jaxgen/evaluation/multiprocess.py).
"""

import hashlib
import json
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from absl import logging
import jax
import ml_collections
import numpy as np

from jaxgen import backend
from jaxgen import configlib
from jaxgen.data import pipeline
from jaxgen.evaluation import features
from jaxgen.evaluation import metrics
from jaxgen.evaluation import multiprocess
from jaxgen.evaluation import statistics
from jaxgen.evaluation import weights as weights_lib
from jaxgen.tasks import base

# Metrics that only exist when FID runs (and their per-direction
# "_AtoB"/"_BtoA" forms); a best checkpoint by one of them needs the weights
# from the start.
FID_METRICS = ("eval/fid", "eval/kid")
VALUE_RANGE = (0.0, 1.0)  # Images of generate() and of the datasets.
NO_CLASSIFIER_NOTE = (
    "IS skipped: these Inception weights have no classifier (fid-helper's "
    "copy); use pytorch-fid's pt_inception-2015-12-05-6726825d.pth for IS.")


def get_extractor(resize_mode: str = "bilinear-tf", batch_size: int = 64
                  ) -> features.InceptionExtractor:
  """The shared Inception extractor (weights from the env var or cache).

  Args:
    resize_mode: resize to 299 px (see `resize.RESIZE_MODES`).
    batch_size: images per jitted forward pass.

  Returns:
    An `InceptionExtractor`.

  Raises:
    weights.WeightsNotFoundError: with instructions when there are no
      weights.
  """
  return features.default_extractor(None, resize_mode, batch_size)


def is_fid_metric(name: str) -> bool:
  """Whether `name` is one of FID_METRICS, possibly with a direction."""
  return any(name == m or name.startswith(m + "_") for m in FID_METRICS)


def metric_names(task) -> List[str]:
  """The metrics a FIDEvaluator of `task` reports."""
  if base.generates(task):
    return list(FID_METRICS)
  return [f"{m}_{d}" if d else m for d in task.translations()
          for m in FID_METRICS]


def dataset_key(data_cfg: ml_collections.ConfigDict) -> str:
  """Cache name of a dataset: its name and a hash of its whole config.

  The name alone is not enough: e.g. "cifar" may be a folder, TFDS or the
  synthetic stand-in, and reference statistics of one must never be used
  for another. Fields that only affect training (augmentation) change the
  hash too, which only costs a recomputation.

  Args:
    data_cfg: `config.data`.

  Returns:
    "<name>_<8 hex digits>".
  """
  text = json.dumps(json.loads(data_cfg.to_json_best_effort()),
                    sort_keys=True)
  return f"{data_cfg.name}_{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def real_images(dataset: pipeline.Dataset, batch_size: int,
                fn: Optional[Callable] = None) -> Iterator[np.ndarray]:
  """Images of an evaluation split in order, without the padding.

  Args:
    dataset: the split (e.g. `pipeline.build(config.data, "test")`).
    batch_size: batch size read at a time.
    fn: batch dict -> [n, h, w, c] images in [0, 1]; default
      `batch["image"]`.

  Yields:
    numpy batches; the padded examples of the last batch (mask 0) dropped.
  """
  for batch in pipeline.eval_batches(dataset, batch_size):
    mask = np.asarray(batch.pop("mask")) > 0
    images = batch["image"] if fn is None else fn(batch)
    yield np.asarray(images)[mask]


def noise_key(seed: int) -> jax.Array:
  """The fixed key of FID samples (of the run's seed).

  The eval CLI uses it too, so it reproduces an in-training FID given the
  same image count and batch size.

  Args:
    seed: `config.seed`.

  Returns:
    A JAX key.
  """
  return jax.random.fold_in(jax.random.key(seed), 0xF1D)


def generated_images(generate: Callable, state, rng: jax.Array, num: int,
                     batch_size: int) -> Iterator[jax.Array]:
  """`num` generated images, in chunks of exactly `batch_size`.

  Args:
    generate: jitted (state, rng, num) -> images with `num` static, e.g.
      `jax.jit(task.generate, static_argnums=2)`; a fixed chunk size means
      one compilation.
    state: the task state.
    rng: base key; chunk i uses fold_in(rng, i).
    num: images wanted (the last chunk is cut by the consumer's limit).
    batch_size: chunk size.

  Yields:
    [batch_size, h, w, c] device arrays in [0, 1].
  """
  for i in range(-(-num // batch_size)):
    yield generate(state, jax.random.fold_in(rng, i), batch_size)


def reference(data_cfg: ml_collections.ConfigDict, dataset: pipeline.Dataset,
              extractor, *, split: str = "test", batch_size: int = 64,
              num_images: Optional[int] = None,
              fn: Optional[Callable] = None) -> statistics.InceptionStatistics:
  """Cached Inception statistics (with features) of a real split.

  With several processes each reads its rows of every batch and the
  features are all-gathered (the cache is read only if every process has
  it, and written by process 0); the statistics equal one process's.

  Args:
    data_cfg: `config.data` (names the cache entry, see `dataset_key`).
    dataset: the split's Dataset.
    extractor: the feature extractor (its resize mode is in the key).
    split: split name in the cache key.
    batch_size: read batch size.
    num_images: use only the first images (None or 0: all).
    fn: batch -> images in [0, 1] (see `real_images`).

  Returns:
    `InceptionStatistics` with features (for KID and precision/recall).
  """
  # "HxWxC" of the images as the metric sees them, for the cache key (one
  # row per process: eval batches split evenly over the processes).
  first = next(real_images(dataset, jax.process_count(), fn))
  resolution = "x".join(str(d) for d in first.shape[1:])
  images = lambda: real_images(dataset, batch_size, fn)
  if jax.process_count() == 1:
    return features.reference_statistics(
        dataset_key(data_cfg), split, resolution, images, extractor,
        value_range=VALUE_RANGE, num_images=num_images or None,
        keep_features=True)

  def compute():
    stats = multiprocess.gathered_statistics(images(), extractor, VALUE_RANGE)
    if num_images:
      stats = multiprocess.from_features(stats.features[:num_images],
                                         extractor)
    return stats

  return multiprocess.cached_reference(
      statistics.reference_statistics_path(
          dataset_key(data_cfg), split, resolution, extractor.resize_mode,
          extractor.normalization, num_images or None), compute)


def translated_images(translate: Callable, state, dataset: pipeline.Dataset,
                      rng: jax.Array, batch_size: int,
                      targets: Optional[Callable] = None
                      ) -> Iterator[Tuple[np.ndarray, Optional[np.ndarray]]]:
  """A translation's outputs for every example of a split, in order.

  Args:
    translate: jitted (state, batch, rng) -> images in [0, 1] (one of
      `task.translations()`).
    state: the task state.
    dataset: the split.
    rng: base key; batch i uses fold_in(rng, i).
    batch_size: examples per call.
    targets: optional batch -> target images in [0, 1].

  Yields:
    (outputs, targets or None) as numpy, the padding of the last batch
    dropped.
  """
  for i, batch in enumerate(pipeline.eval_batches(dataset, batch_size)):
    mask = np.asarray(batch.pop("mask")) > 0
    out = np.asarray(translate(state, batch, jax.random.fold_in(rng, i)))
    yield out[mask], (None if targets is None else
                      np.asarray(targets(batch))[mask])


def set_metrics(real: statistics.InceptionStatistics,
                fake: statistics.InceptionStatistics,
                notes: List[str]) -> Dict[str, float]:
  """FID, KID, precision/recall and IS as far as the set sizes allow.

  Args:
    real: reference statistics (with features).
    fake: statistics of the evaluated images (with features).
    notes: list that receives a line for each metric left out.

  Returns:
    {'fid', 'kid', 'kid_std'} and, when possible, {'precision', 'recall'}
    and {'is', 'is_std'} (see `statistics.distribution_metrics`).
  """
  pr_k = 3
  if min(real.num_images, fake.num_images) > pr_k:
    out = statistics.distribution_metrics(real, fake, pr_k=pr_k)
  else:
    notes.append(f"Precision/recall skipped: needs more than {pr_k} images "
                 "per set.")
    out = {"fid": metrics.frechet_distance(real.mu, real.sigma, fake.mu,
                                           fake.sigma)}
    out["kid"], out["kid_std"] = metrics.kernel_inception_distance(
        real.features, fake.features)
  if "is" not in out:
    notes.append(NO_CLASSIFIER_NOTE)
  return out


class FIDEvaluator:
  """FID/KID of a task's images against the test split (module docstring).

  Each call uses the same noise, so values at different steps differ only by
  the model.
  """

  def __init__(self, task, test_ds: pipeline.Dataset,
               config: ml_collections.ConfigDict, extractor):
    # Fields missing from a hand-written eval group take the defaults.
    self.cfg = configlib.fid_defaults(**config.eval.to_dict())
    self.data_cfg = config.data
    self.test_ds = test_ds
    self.extractor = extractor
    self.rng = noise_key(config.seed)
    if base.generates(task):
      self._generate = backend.jit(task.generate, static_argnums=2)
      self._directions = {}
    else:
      self._generate = None
      self._directions = {d: (backend.jit(fn), targets)
                          for d, (fn, targets) in task.translations().items()}
    self._reference = {}

  def due(self, step: int, last_step: int) -> bool:
    """Whether FID runs at `step` (every `fid_every` and at the end)."""
    every = self.cfg.fid_every
    return every > 0 and (step % every == 0 or step == last_step)

  def reference(self, direction: Optional[str] = None
                ) -> statistics.InceptionStatistics:
    """Statistics of the test images (or of a direction's targets), computed
    (or read from the cache) once."""
    if direction not in self._reference:
      kwargs = dict(batch_size=self.cfg.fid_batch_size)
      if direction is None:
        kwargs["num_images"] = self.cfg.fid_ref_num
      else:
        # The split names of `python -m jaxgen.evaluate`: one cache entry.
        kwargs.update(split="test_targets" + (f"_{direction}" if direction
                                              else ""),
                      fn=self._directions[direction][1])
      self._reference[direction] = reference(
          self.data_cfg, self.test_ds, self.extractor, **kwargs)
    return self._reference[direction]

  def _image_sets(self, state):
    """(suffix, reference, images, num, what) of each set FID scores."""
    if self._generate is not None:
      # With several processes, each generates its share of the chunks.
      chunks = (multiprocess.generated_blocks if jax.process_count() > 1
                else generated_images)
      yield ("", self.reference(),
             chunks(self._generate, state, self.rng, self.cfg.fid_num,
                    self.cfg.fid_batch_size),
             self.cfg.fid_num, "generated images")
      return
    for direction, (translate, _) in self._directions.items():
      outputs = (o for o, _ in translated_images(
          translate, state, self.test_ds, self.rng, self.cfg.fid_batch_size))
      yield (f"_{direction}" if direction else "", self.reference(direction),
             outputs, None, f"translated {direction or 'test'} images")

  def _statistics(self, images, num: Optional[int], what: str
                  ) -> statistics.InceptionStatistics:
    if jax.process_count() > 1:
      # Each process's features, all-gathered in one-process order.
      return multiprocess.gathered_statistics(images, self.extractor,
                                              VALUE_RANGE)
    return features.compute_statistics(
        images, self.extractor, value_range=VALUE_RANGE, num_images=num,
        keep_features=self.cfg.kid_subsets > 0, keep_logits=False, name=what)

  def __call__(self, state) -> Dict[str, float]:
    """{"eval/fid", "eval/kid"} (per direction for translations)."""
    if jax.process_count() > 1:
      state = multiprocess.local_copy(state)
    out = {}
    for suffix, real, images, num, what in self._image_sets(state):
      start = time.time()
      fake = self._statistics(images, num, what)
      fid = f"eval/fid{suffix}"
      out[fid] = metrics.frechet_distance(real.mu, real.sigma, fake.mu,
                                          fake.sigma)
      if self.cfg.kid_subsets > 0:
        # Fewer subsets than the CLI's 100: each is three 1000x2048x1000
        # float64 matrix products on the host, and a curve needs no more.
        out[f"eval/kid{suffix}"], _ = metrics.kernel_inception_distance(
            real.features, fake.features, num_subsets=self.cfg.kid_subsets)
      logging.info("FID of %d %s vs %d test images (%s resize): %.3f "
                   "(%.1f s)", fake.num_images, what, real.num_images,
                   self.extractor.resize_mode, out[fid], time.time() - start)
    return out


def from_config(config: ml_collections.ConfigDict, task,
                test_ds: pipeline.Dataset) -> Optional[FIDEvaluator]:
  """The loop's FID evaluator, or None when FID is off or impossible.

  FID is off without a `config.eval` group or with `fid_every <= 0`. When
  the Inception weights are missing it logs one warning (with how to get
  them) and returns None, unless the best checkpoint is chosen by an FID
  metric: then it fails now rather than after hours of training.

  Args:
    config: the experiment config.
    task: the task (it must generate or translate when FID is on).
    test_ds: the test split.

  Returns:
    A `FIDEvaluator` or None.

  Raises:
    ValueError: `train.best_metric` is an FID metric but FID is off or the
      task does not report it, or FID is on for a task that neither
      generates nor translates.
    weights.WeightsNotFoundError: no weights while `best_metric` needs them.
  """
  eval_cfg = config.get("eval")
  every = int(eval_cfg.get("fid_every", 0)) if eval_cfg else 0
  best = config.train.get("best_metric", "")
  if is_fid_metric(best) and every <= 0:
    raise ValueError(
        f"config.train.best_metric is {best!r} but FID is off "
        "(config.eval.fid_every <= 0 or no config.eval group); set e.g. "
        "--config.eval.fid_every=1000 (configlib.fid_defaults) or pick "
        "another best_metric.")
  if every <= 0:
    return None
  if not (base.generates(task) or task.translations()):
    raise ValueError(f"config.eval.fid_every={every} but task "
                     f"{config.task!r} neither generates nor translates "
                     "images; set it to 0.")
  names = metric_names(task)
  if is_fid_metric(best) and best not in names:
    raise ValueError(f"config.train.best_metric={best!r} is not reported for "
                     f"task {config.task!r}; its FID metrics are "
                     f"{', '.join(names)}.")
  try:
    defaults = configlib.fid_defaults()
    extractor = get_extractor(
        eval_cfg.get("fid_resize", defaults.fid_resize),
        eval_cfg.get("fid_batch_size", defaults.fid_batch_size))
  except weights_lib.WeightsNotFoundError as e:
    if is_fid_metric(best):
      raise weights_lib.WeightsNotFoundError(
          f"config.train.best_metric={best!r} needs the Inception weights, "
          f"which are missing.\n{e}") from e
    logging.warning("FID/KID during training are skipped "
                    "(config.eval.fid_every=%d): %s", every, e)
    return None
  return FIDEvaluator(task, test_ds, config, extractor)

