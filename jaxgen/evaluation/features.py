"""Streaming Inception feature extraction and FID statistics.

Images come as an iterable of NHWC batches of any size:

  * uint8 batches are taken as [0, 255];
  * float batches need `value_range`, e.g. (-1, 1) for tanh generators or
    (0, 1); they are mapped to [0, 255] and, by default, rounded to integers
    (`quantize=True`), as if saved as 8-bit PNGs, which is what reference
    tools see for generated images;
  * greyscale (C = 1) batches are repeated to 3 channels, as StyleGAN2-ADA
    does; other channel counts are rejected.

Batches are re-packed into fixed-size blocks of `batch_size` images (the last
one zero-padded and the padding dropped), so the jitted network compiles once
per image resolution, never per batch size. Feature moments are accumulated
in float64 (`statistics.RunningMoments`), so memory stays bounded however
many images are seen; features and logits are only kept on request, up to a
cap.
"""

import functools
import time
from typing import Callable, Dict, Iterable, Iterator, Optional, Tuple

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import backend
from jaxgen.evaluation import inception
from jaxgen.evaluation import resize as resize_lib
from jaxgen.evaluation import statistics
from jaxgen.evaluation import weights as weights_lib
from jaxgen.evaluation.statistics import InceptionStatistics

# Re-exported: statistics files and the metrics computed from them.
save_statistics = statistics.save_statistics
load_statistics = statistics.load_statistics
distribution_metrics = statistics.distribution_metrics

ValueRange = Optional[Tuple[float, float]]


def _to_pixels(images: jax.Array, value_range: ValueRange,
               quantize: bool) -> jax.Array:
  """Maps a batch to float32 [0, 255] with 3 channels (inside jit)."""
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32)
  else:
    lo, hi = value_range
    x = (images.astype(jnp.float32) - lo) * (255.0 / (hi - lo))
    x = jnp.clip(jnp.round(x) if quantize else x, 0.0, 255.0)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  return x


class InceptionExtractor:
  """Computes FID Inception pool features (and logits) of image batches.

  Attributes:
    batch_size: images per jitted forward pass.
    resize_mode: resize mode to 299x299 (see `resize.RESIZE_MODES`).
    normalization: input normalisation ('tf' or 'pytorch-fid').
    num_classes: classifier width (1008), or None without classifier weights.
  """

  def __init__(self, weights_path=None, *, batch_size: int = 64,
               resize_mode: str = "bilinear-tf", normalization: str = "tf",
               logits_bias: bool = False):
    """Loads the weights and prepares the jitted network.

    Args:
      weights_path: weights file (see `weights.resolve_weights_path`).
      batch_size: images per forward pass (fixed, to compile once).
      resize_mode: see `resize.RESIZE_MODES`; 'bilinear-tf' reproduces the
        TF FID graph / StyleGAN2-ADA, 'bilinear-torch' pytorch-fid,
        'bicubic-pil' clean-fid.
      normalization: 'tf' ((x - 128) / 128) or 'pytorch-fid'.
      logits_bias: add the classifier bias to the logits (the reference IS
        does not).
    """
    if resize_mode not in resize_lib.RESIZE_MODES:
      raise ValueError(f"resize_mode must be one of {resize_lib.RESIZE_MODES}"
                       f", got {resize_mode!r}.")
    if normalization not in inception.NORMALIZATIONS:
      raise ValueError(f"normalization must be one of "
                       f"{inception.NORMALIZATIONS}, got {normalization!r}.")
    w = weights_lib.load_inception_weights(weights_path)
    params, self.num_classes = inception.params_from_weights(w, logits_bias)
    self._params = jax.device_put(params)
    self._model = inception.InceptionV3(num_classes=self.num_classes,
                                        logits_bias=logits_bias)
    self.batch_size = batch_size
    self.resize_mode = resize_mode
    self.normalization = normalization
    self._forward = backend.jit(self._forward_impl, static_argnums=(2, 3))

  def _forward_impl(self, params, images, value_range, quantize):
    x = _to_pixels(images, value_range, quantize)
    x = inception.preprocess(x, self.resize_mode, self.normalization)
    return self._model.apply(params, x)

  def forward_batch(self, images, value_range: ValueRange = None,
                    quantize: bool = True) -> Dict[str, jax.Array]:
    """Runs one block of exactly `batch_size` images.

    Args:
      images: [batch_size, H, W, C] uint8 or float images.
      value_range: (low, high) of float images; ignored for uint8.
      quantize: round float images to integer pixel values.

    Returns:
      {'pool': [B, 2048], 'logits': [B, 1008] when available} device arrays.
    """
    _check_images(images, value_range)
    if images.shape[0] != self.batch_size:
      # A new batch size would mean a new compilation; `iter_features` pads.
      raise ValueError(f"Expected a block of {self.batch_size} images, got "
                       f"{images.shape[0]}.")
    value_range = None if value_range is None else tuple(
        float(v) for v in value_range)
    return self._forward(self._params, images, value_range, bool(quantize))

  def iter_features(self, batches: Iterable, value_range: ValueRange = None,
                    quantize: bool = True, num_images: Optional[int] = None
                    ) -> Iterator[Dict[str, np.ndarray]]:
    """Yields {'pool', 'logits'?} numpy arrays for the valid images.

    Args:
      batches: iterable of NHWC image batches of any size.
      value_range: (low, high) of float images; ignored for uint8.
      quantize: round float images to integer pixel values.
      num_images: stop after this many images.
    """
    for block, n in _rebatch(batches, self.batch_size, num_images):
      out = self.forward_batch(block, value_range, quantize)
      yield {k: np.asarray(v[:n]) for k, v in out.items()}

  def __call__(self, images, value_range: ValueRange = None,
               quantize: bool = True) -> Dict[str, np.ndarray]:
    """Features of an [N, H, W, C] array of any N (see `iter_features`)."""
    parts = list(self.iter_features([images], value_range, quantize))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _check_images(images, value_range: ValueRange):
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError("Expected NHWC images with 1 or 3 channels, got shape "
                     f"{images.shape}.")
  if images.dtype != np.uint8 and value_range is None:
    raise ValueError("Float images need value_range, e.g. (-1, 1) or (0, 1).")


def _rebatch(batches: Iterable, batch_size: int,
             limit: Optional[int]) -> Iterator[Tuple[object, int]]:
  """Re-packs batches into fixed-size blocks: yields (block, num_valid)."""
  buf, buffered, seen = [], 0, 0
  for batch in batches:
    if limit is not None:
      if seen >= limit:
        break
      batch = batch[:limit - seen]
    seen += batch.shape[0]
    if not buf and batch.shape[0] == batch_size:
      yield batch, batch_size  # Common case: no host copy needed.
      continue
    batch = np.asarray(batch)
    if buf and batch.shape[1:] != buf[0].shape[1:]:
      raise ValueError("All images must share one shape and dtype, got "
                       f"{buf[0].shape[1:]} then {batch.shape[1:]}.")
    buf.append(batch)
    buffered += batch.shape[0]
    while buffered >= batch_size:
      cat = np.concatenate(buf)
      yield cat[:batch_size], batch_size
      buf, buffered = [cat[batch_size:]], buffered - batch_size
  if buffered:
    cat = np.concatenate(buf)
    pad = np.zeros((batch_size - buffered,) + cat.shape[1:], cat.dtype)
    yield np.concatenate([cat, pad]), buffered


@functools.lru_cache(maxsize=4)
def default_extractor(weights_path=None, resize_mode: str = "bilinear-tf",
                      batch_size: int = 64) -> InceptionExtractor:
  """A shared extractor, so weights are loaded and compiled once."""
  return InceptionExtractor(weights_path, batch_size=batch_size,
                            resize_mode=resize_mode)


def compute_statistics(images: Iterable,
                       extractor: Optional[InceptionExtractor] = None, *,
                       value_range: ValueRange = None, quantize: bool = True,
                       num_images: Optional[int] = None,
                       keep_features: bool = False,
                       keep_logits: Optional[bool] = None,
                       max_kept: int = 50_000, progress: bool = True,
                       name: str = "images") -> InceptionStatistics:
  """Streams images through Inception and accumulates FID statistics.

  Args:
    images: iterable of NHWC batches (see the module docstring).
    extractor: the feature extractor; `default_extractor()` if None.
    value_range: (low, high) of float images; ignored for uint8.
    quantize: round float images to integer pixel values.
    num_images: stop after this many images.
    keep_features: keep the pool features (needed for KID, precision/recall).
    keep_logits: keep the classifier logits (needed for IS); defaults to
      whether the weights have a classifier.
    max_kept: cap on kept features/logits (the moments use every image).
    progress: log progress (absl logging) every ~10 s and at the end.
    name: label for the progress lines.

  Returns:
    `InceptionStatistics` with the moments of all images.
  """
  extractor = extractor or default_extractor()
  if keep_logits is None:
    keep_logits = extractor.num_classes is not None
  moments = statistics.RunningMoments(inception.FEATURE_DIM)
  kept = {"pool": [], "logits": []}
  n_kept = 0
  start = last_log = time.time()
  for out in extractor.iter_features(images, value_range, quantize,
                                     num_images):
    moments.update(out["pool"])
    room = max_kept - n_kept
    if room > 0 and (keep_features or keep_logits):
      if keep_features:
        kept["pool"].append(out["pool"][:room])
      if keep_logits and "logits" in out:
        kept["logits"].append(out["logits"][:room])
      n_kept += min(room, out["pool"].shape[0])
    now = time.time()
    if progress and now - last_log > 10.0:
      last_log = now
      logging.info("Inception features of %s: %d images (%.1f img/s)", name,
                   moments.count, moments.count / (now - start))
  if progress:
    elapsed = max(time.time() - start, 1e-9)
    logging.info("Inception features of %s: done, %d images in %.1f s "
                 "(%.1f img/s)", name, moments.count, elapsed,
                 moments.count / elapsed)
  if moments.count > max_kept and (keep_features or keep_logits):
    logging.warning("Kept features/logits of the first %d of %d images only "
                    "(max_kept).", max_kept, moments.count)

  def cat(parts):
    return np.concatenate(parts).astype(np.float32) if parts else None

  return InceptionStatistics(
      mu=moments.mean.copy(), sigma=moments.covariance(),
      num_images=moments.count, features=cat(kept["pool"]),
      logits=cat(kept["logits"]), resize_mode=extractor.resize_mode,
      normalization=extractor.normalization)


def reference_statistics(dataset: str, split: str, resolution,
                         images_fn: Callable[[], Iterable],
                         extractor: Optional[InceptionExtractor] = None, *,
                         value_range: ValueRange = None,
                         num_images: Optional[int] = None,
                         keep_features: bool = False,
                         recompute: bool = False,
                         cache_dir=None) -> InceptionStatistics:
  """Reference (real-data) statistics, computed once and cached as npz.

  The cache key is dataset/split/resolution/resize mode/normalisation (and
  the image limit); see `statistics.reference_statistics_path`.

  Args:
    dataset: dataset name.
    split: split name.
    resolution: image resolution used by the model.
    images_fn: zero-argument callable returning the image batch iterable;
      only called on a cache miss.
    extractor: the feature extractor; `default_extractor()` if None.
    value_range: (low, high) of float images; ignored for uint8.
    num_images: use only the first images.
    keep_features: also store features (for KID and precision/recall).
    recompute: ignore an existing cache entry.
    cache_dir: cache root; defaults to $JAXGEN_CACHE or ~/.cache/jaxgen.

  Returns:
    The reference `InceptionStatistics`.
  """
  extractor = extractor or default_extractor()
  path = statistics.reference_statistics_path(
      dataset, split, resolution, extractor.resize_mode,
      extractor.normalization, num_images, cache_dir)
  if path.is_file() and not recompute:
    stats = statistics.load_statistics(path)
    if stats.features is not None or not keep_features:
      return stats
  stats = compute_statistics(images_fn(), extractor, value_range=value_range,
                             num_images=num_images,
                             keep_features=keep_features, keep_logits=False,
                             name=f"{dataset}/{split}")
  save_statistics(stats, path)
  logging.info("Saved reference statistics to %s", path)
  return stats
