"""Distribution metrics on Inception features: FID, KID, IS, precision/recall.

All functions take numpy-compatible arrays and return Python floats (or
tuples of floats), so they can be called from training loops and tests alike.
Accumulations that decide the result (covariances, matrix square roots, the
KID kernel sums, the IS KL terms) are done in float64.

The paired (image-to-image) metrics L1, PSNR and SSIM live in
`jaxgen.evaluation.paired` and are re-exported here.
"""

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.evaluation import paired

# Paired metrics, re-exported so `metrics` is the one place to look.
l1_error = paired.l1_error
psnr = paired.psnr
ssim = paired.ssim
mean_std = paired.mean_std
format_mean_std = paired.format_mean_std
paired_metrics = paired.paired_metrics


def feature_statistics(features) -> Tuple[np.ndarray, np.ndarray]:
  """Returns the mean and unbiased covariance (ddof=1) of [N, D] features."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise ValueError(f"Need [N >= 2, D] features, got shape {x.shape}.")
  return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

  The trace term uses tr((S1 S2)^(1/2)) = tr((R S2 R)^(1/2)) with R = S1^(1/2)
  (both matrices have the same eigenvalues). R S2 R is symmetric positive
  semi-definite, so its eigenvalues come from `eigh` and are real and
  non-negative up to rounding; this avoids the complex results and the
  eps-offset retry that `scipy.linalg.sqrtm(S1 @ S2)` needs when the
  covariances are singular (fewer samples than dimensions).

  Args:
    mu1: [D] mean of the first distribution.
    sigma1: [D, D] covariance of the first distribution.
    mu2: [D] mean of the second distribution.
    sigma2: [D, D] covariance of the second distribution.

  Returns:
    The FID as a float (clamped at 0 against rounding).
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape:
    raise ValueError("Mean and covariance shapes of the two sets differ.")
  # Symmetrise: covariances accumulated in pieces can be off by rounding.
  s1, s2 = (s1 + s1.T) / 2, (s2 + s2.T) / 2
  root = _sqrtm_psd(s1)
  m = root @ s2 @ root
  eig = np.linalg.eigvalsh((m + m.T) / 2)
  tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
  diff = mu1 - mu2
  fid = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
  return float(max(fid, 0.0))


def fid_from_features(features1, features2) -> float:
  """FID between two [N, D] feature sets."""
  return frechet_distance(*feature_statistics(features1),
                          *feature_statistics(features2))


def _poly_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
  d = x.shape[1]
  m = x.shape[0]
  kxx = (x @ x.T / d + 1.0) ** 3
  kyy = (y @ y.T / d + 1.0) ** 3
  kxy = (x @ y.T / d + 1.0) ** 3
  off_diag = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy))
  return off_diag / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m)


def kernel_inception_distance(features1, features2, num_subsets: int = 100,
                              subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
  """KID: unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3.

  As in Binkowski et al. (2018) and StyleGAN2-ADA: each of `num_subsets`
  rounds draws `m = min(subset_size, n1, n2)` rows without replacement from
  each set and computes the unbiased MMD^2 estimate on them.

  Args:
    features1: [N1, D] features (e.g. real).
    features2: [N2, D] features (e.g. generated).
    num_subsets: number of random subsets.
    subset_size: subset size, clamped to the smaller set.
    seed: seed of the subset sampling.

  Returns:
    (mean, std) of the per-subset MMD^2 values (std with ddof=0).
  """
  x_all = np.asarray(features1, np.float64)
  y_all = np.asarray(features2, np.float64)
  m = min(subset_size, x_all.shape[0], y_all.shape[0])
  if m < 2:
    raise ValueError("KID needs at least 2 samples per set.")
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(num_subsets):
    x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
    y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
    values.append(_poly_mmd2_unbiased(x, y))
  values = np.asarray(values)
  return float(values.mean()), float(values.std())


def inception_score(logits_or_probs, num_splits: int = 10,
                    from_logits: bool = True) -> Tuple[float, float]:
  """Inception Score exp(E_x KL(p(y|x) || p(y))), averaged over splits.

  Splits are consecutive slices [i * n // s, (i + 1) * n // s), as in the
  original implementation and StyleGAN2-ADA.

  Args:
    logits_or_probs: [N, K] classifier logits or probabilities. The reference
      IS uses the 1008-way logits without the classifier bias.
    num_splits: number of splits (the score is computed per split).
    from_logits: whether the input holds logits (softmax applied here).

  Returns:
    (mean, std) of the per-split scores (std with ddof=0).
  """
  x = np.asarray(logits_or_probs, np.float64)
  n = x.shape[0]
  if num_splits < 1 or n < num_splits:
    raise ValueError(f"Need at least num_splits={num_splits} samples.")
  if from_logits:
    log_p = x - x.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
  else:
    p = x / x.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
      log_p = np.log(p)
  scores = []
  for i in range(num_splits):
    sl = slice(i * n // num_splits, (i + 1) * n // num_splits)
    part, log_part = p[sl], log_p[sl]
    with np.errstate(divide="ignore"):
      log_py = np.log(part.mean(axis=0, keepdims=True))
    # 0 * log 0 = 0 for classes with zero probability.
    safe = part > 0
    kl = np.where(safe, part * (np.where(safe, log_part, 0.0) -
                               np.where(safe, log_py, 0.0)), 0.0).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  scores = np.asarray(scores)
  return float(scores.mean()), float(scores.std())


@jax.jit
def _sq_dists(a: jax.Array, b: jax.Array) -> jax.Array:
  hi = jax.lax.Precision.HIGHEST
  aa = jnp.sum(a * a, axis=1)[:, None]
  bb = jnp.sum(b * b, axis=1)[None, :]
  return jnp.maximum(aa + bb - 2.0 * jnp.dot(a, b.T, precision=hi), 0.0)


def _row_blocks(x: np.ndarray, batch: int):
  """Yields (padded block of `batch` rows, number of valid rows)."""
  for start in range(0, x.shape[0], batch):
    block = x[start:start + batch]
    n = block.shape[0]
    if n < batch:  # Pad so every call has the same shape: one compilation.
      block = np.concatenate([block, np.zeros((batch - n,) + block.shape[1:],
                                              block.dtype)])
    yield block, n


def _knn_radii(x: np.ndarray, k: int, batch: int) -> np.ndarray:
  """Distance of each row of x to its k-th nearest other row of x."""
  radii = []
  xj = jnp.asarray(x)
  for block, n in _row_blocks(x, batch):
    d = np.asarray(_sq_dists(jnp.asarray(block), xj))[:n]
    # Index k, not k - 1: the nearest "neighbour" is the point itself.
    radii.append(np.sqrt(np.partition(d, k, axis=1)[:, k]))
  return np.concatenate(radii)


def _coverage(query: np.ndarray, ref: np.ndarray, radii: np.ndarray,
              batch: int) -> float:
  """Fraction of query rows inside some ball B(ref_j, radii_j)."""
  inside = []
  refj = jnp.asarray(ref)
  r2 = radii.astype(np.float64) ** 2
  for block, n in _row_blocks(query, batch):
    d = np.asarray(_sq_dists(jnp.asarray(block), refj))[:n]
    inside.append(np.any(d <= r2[None, :], axis=1))
  return float(np.concatenate(inside).mean())


def precision_recall(real_features, fake_features, k: int = 3,
                     batch_size: int = 1024) -> Tuple[float, float]:
  """Improved precision and recall (Kynkäänniemi et al., 2019).

  The real (fake) manifold is the union of balls around each real (fake)
  feature with radius the distance to its k-th nearest neighbour in the same
  set. Precision is the fraction of fake samples inside the real manifold,
  recall the fraction of real samples inside the fake manifold. Distances are
  computed in float32 blocks of `batch_size` rows (jitted, padded to a fixed
  shape).

  Args:
    real_features: [N1, D] features of real images.
    fake_features: [N2, D] features of generated images.
    k: neighbourhood size (3 in the paper).
    batch_size: rows per distance block.

  Returns:
    (precision, recall).
  """
  real = np.asarray(real_features, np.float32)
  fake = np.asarray(fake_features, np.float32)
  if min(real.shape[0], fake.shape[0]) <= k:
    raise ValueError(f"Precision/recall needs more than k={k} samples.")
  real_radii = _knn_radii(real, k, batch_size)
  fake_radii = _knn_radii(fake, k, batch_size)
  precision = _coverage(fake, real, real_radii, batch_size)
  recall = _coverage(real, fake, fake_radii, batch_size)
  return precision, recall


def fid_from_statistics(stats1, stats2) -> float:
  """FID from two mappings (or `InceptionStatistics`) with 'mu' and 'sigma'."""
  return frechet_distance(stats1["mu"], stats1["sigma"], stats2["mu"],
                          stats2["sigma"])
