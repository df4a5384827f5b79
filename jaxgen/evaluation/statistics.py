"""Inception feature statistics: running moments, npz files, reference cache.

`InceptionStatistics` holds what the distribution metrics need: the feature
mean and covariance (FID), optionally the features themselves (KID,
precision/recall) and the classifier logits (IS), plus the preprocessing
that produced them, so statistics computed with different resize modes are
never compared by accident.
"""

import dataclasses
import os
import pathlib
import re
from typing import Dict, Optional

import numpy as np

from jaxgen.evaluation import metrics
from jaxgen.evaluation import weights as weights_lib

UNKNOWN = "unknown"


class RunningMoments:
  """Streaming mean and covariance in float64 (Chan et al. pairwise update).

  Memory is O(D^2) whatever the number of samples; merging per-batch centred
  moments avoids the cancellation of the naive sum / sum-of-squares formula.
  """

  def __init__(self, dim: int):
    self.count = 0
    self.mean = np.zeros(dim, np.float64)
    self._m2 = np.zeros((dim, dim), np.float64)

  def update(self, x) -> None:
    """Adds a [n, D] batch of samples."""
    x = np.asarray(x, np.float64)
    n_b = x.shape[0]
    if n_b == 0:
      return
    mean_b = x.mean(axis=0)
    xc = x - mean_b
    m2_b = xc.T @ xc
    n = self.count + n_b
    delta = mean_b - self.mean
    self._m2 += m2_b + np.outer(delta, delta) * (self.count * n_b / n)
    self.mean += delta * (n_b / n)
    self.count = n

  def covariance(self) -> np.ndarray:
    """Unbiased (ddof=1) covariance, as `np.cov` and the FID references."""
    if self.count < 2:
      raise ValueError("Need at least 2 samples for a covariance.")
    return self._m2 / (self.count - 1)


@dataclasses.dataclass
class InceptionStatistics:
  """Feature statistics of an image set.

  Attributes:
    mu: [2048] float64 feature mean.
    sigma: [2048, 2048] float64 feature covariance (ddof=1).
    num_images: number of images the moments were computed from.
    features: optional [M, 2048] float32 features (M <= num_images).
    logits: optional [M, 1008] float32 classifier logits.
    resize_mode: resize mode used (see `resize.RESIZE_MODES`).
    normalization: input normalisation used ('tf' or 'pytorch-fid').
  """

  mu: np.ndarray
  sigma: np.ndarray
  num_images: int
  features: Optional[np.ndarray] = None
  logits: Optional[np.ndarray] = None
  resize_mode: str = UNKNOWN
  normalization: str = UNKNOWN

  def __getitem__(self, key: str):
    # Lets code written for {'mu': ..., 'sigma': ...} dicts accept this too.
    return getattr(self, key)


def save_statistics(stats: InceptionStatistics, path) -> pathlib.Path:
  """Writes statistics to an npz (atomically).

  Args:
    stats: the statistics.
    path: destination .npz path.

  Returns:
    The written path.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {"mu": stats.mu, "sigma": stats.sigma,
            "num_images": np.array(stats.num_images),
            "resize_mode": np.array(stats.resize_mode),
            "normalization": np.array(stats.normalization)}
  if stats.features is not None:
    arrays["features"] = stats.features
  if stats.logits is not None:
    arrays["logits"] = stats.logits
  tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)
  return path


def load_statistics(path) -> InceptionStatistics:
  """Reads statistics written by `save_statistics`.

  Files of other tools holding only 'mu' and 'sigma' (pytorch-fid,
  clean-fid) load too, with unknown preprocessing.

  Args:
    path: .npz path.

  Returns:
    The statistics.
  """
  with np.load(path) as data:
    files = set(data.files)

    def get(key, default=None):
      return data[key] if key in files else default

    mu = data["mu"].astype(np.float64)
    return InceptionStatistics(
        mu=mu, sigma=data["sigma"].astype(np.float64),
        num_images=int(get("num_images", np.array(-1))),
        features=get("features"), logits=get("logits"),
        resize_mode=str(get("resize_mode", UNKNOWN)),
        normalization=str(get("normalization", UNKNOWN)))


def _slug(text) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_") or "none"


def reference_statistics_path(dataset: str, split: str, resolution,
                              resize_mode: str, normalization: str = "tf",
                              num_images: Optional[int] = None,
                              cache_dir=None) -> pathlib.Path:
  """Cache path of reference statistics.

  Args:
    dataset: dataset name, e.g. 'celeb_a'.
    split: split name, e.g. 'train'.
    resolution: image resolution (int or 'HxW').
    resize_mode: resize mode of the extractor.
    normalization: input normalisation of the extractor.
    num_images: image limit, if the statistics use a subset.
    cache_dir: root directory; defaults to `weights.cache_dir()`.

  Returns:
    `<cache>/fid_stats/<dataset>-<split>-<res>-<resize>-<norm>[-n<N>].npz`.
  """
  root = pathlib.Path(cache_dir) if cache_dir else weights_lib.cache_dir()
  parts = [dataset, split, resolution, resize_mode, normalization]
  if num_images:
    parts.append(f"n{num_images}")
  return root / "fid_stats" / ("-".join(_slug(p) for p in parts) + ".npz")


def _check_compatible(a: InceptionStatistics, b: InceptionStatistics):
  for field in ("resize_mode", "normalization"):
    va, vb = getattr(a, field), getattr(b, field)
    if UNKNOWN not in (va, vb) and va != vb:
      raise ValueError(f"Statistics were computed with different {field}: "
                       f"{va!r} vs {vb!r}; their FID is not meaningful.")


def distribution_metrics(real: InceptionStatistics,
                         fake: InceptionStatistics, *,
                         kid_subsets: int = 100, kid_subset_size: int = 1000,
                         pr_k: int = 3, is_splits: int = 10,
                         seed: int = 0) -> Dict[str, float]:
  """Every distribution metric the two statistics allow.

  Args:
    real: reference statistics.
    fake: statistics of generated images.
    kid_subsets: KID subsets.
    kid_subset_size: KID subset size.
    pr_k: k of the precision/recall k-NN radii.
    is_splits: Inception Score splits.
    seed: KID subset sampling seed.

  Returns:
    {'fid'} always; {'kid', 'kid_std', 'precision', 'recall'} when both
    carry features; {'is', 'is_std'} when `fake` carries logits. Floats.
  """
  _check_compatible(real, fake)
  out = {"fid": metrics.frechet_distance(real.mu, real.sigma, fake.mu,
                                         fake.sigma)}
  if real.features is not None and fake.features is not None:
    out["kid"], out["kid_std"] = metrics.kernel_inception_distance(
        real.features, fake.features, num_subsets=kid_subsets,
        subset_size=kid_subset_size, seed=seed)
    out["precision"], out["recall"] = metrics.precision_recall(
        real.features, fake.features, k=pr_k)
  if fake.logits is not None:
    n_splits = min(is_splits, fake.logits.shape[0])
    out["is"], out["is_std"] = metrics.inception_score(fake.logits, n_splits)
  return out
