"""Known-value tests of the evaluation metrics (no Inception weights needed)."""

import jax
import numpy as np
import pytest
import scipy.linalg

from jaxgen.evaluation import features
from jaxgen.evaluation import metrics
from jaxgen.evaluation import paired
from jaxgen.evaluation import statistics
from tests import reference


def _random_cov(rng, d, n=None):
  x = rng.normal(size=(n or 3 * d, d))
  return np.cov(x, rowvar=False)


def _fid_scipy(mu1, s1, mu2, s2, eps=1e-6):
  """The pytorch-fid / TTUR formula, as an independent reference."""
  covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
  if not np.isfinite(covmean).all():
    offset = np.eye(s1.shape[0]) * eps
    covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
  covmean = covmean.real
  diff = mu1 - mu2
  return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


class TestFID:

  def test_identical_statistics_give_zero(self):
    rng = np.random.default_rng(0)
    mu, sigma = rng.normal(size=16), _random_cov(rng, 16)
    assert metrics.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(
        0.0, abs=1e-9)

  def test_mean_shift_only(self):
    rng = np.random.default_rng(1)
    mu1, sigma = rng.normal(size=8), _random_cov(rng, 8)
    mu2 = mu1 + rng.normal(size=8)
    expected = np.sum((mu1 - mu2) ** 2)
    assert metrics.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(
        expected, rel=1e-9)

  def test_diagonal_gaussians_closed_form(self):
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.1, 3, size=10), rng.uniform(0.1, 3, size=10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b))**2)
    got = metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-10)

  def test_matches_scipy_sqrtm_formula(self):
    rng = np.random.default_rng(3)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    s1, s2 = _random_cov(rng, 32), _random_cov(rng, 32)
    assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(
        _fid_scipy(mu1, s1, mu2, s2), rel=1e-8)

  def test_singular_covariances_fewer_samples_than_dims(self):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.5
    got = metrics.fid_from_features(x, y)
    ref = _fid_scipy(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                     np.cov(y, rowvar=False))
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(ref, rel=1e-4)

  def test_fid_from_statistics_accepts_dicts(self):
    rng = np.random.default_rng(5)
    s = {"mu": rng.normal(size=4), "sigma": _random_cov(rng, 4)}
    assert metrics.fid_from_statistics(s, s) == pytest.approx(0, abs=1e-9)


class TestRunningMoments:

  def test_streamed_moments_equal_numpy(self):
    rng = np.random.default_rng(0)
    # A large offset makes the naive sum-of-squares formula lose digits.
    x = rng.normal(size=(103, 7)) * 0.01 + 1000.0
    moments = statistics.RunningMoments(7)
    for lo, hi in [(0, 1), (1, 40), (40, 41), (41, 103)]:
      moments.update(x[lo:hi])
    assert moments.count == 103
    np.testing.assert_allclose(moments.mean, x.mean(0), rtol=1e-14)
    np.testing.assert_allclose(moments.covariance(), np.cov(x, rowvar=False),
                               rtol=1e-9, atol=1e-14)


def _mmd2_direct(x, y):
  """O(n^2) loop over pairs: the textbook unbiased MMD^2 estimator."""
  d = x.shape[1]
  k = lambda a, b: (np.dot(a, b) / d + 1.0) ** 3
  m = len(x)
  sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
  syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
  sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return sxx / (m * (m - 1)) + syy / (m * (m - 1)) - 2 * sxy / (m * m)


class TestKID:

  def test_full_subset_equals_direct_mmd(self):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 0.3
    # subset_size is clamped to n, so each subset is a permutation of all
    # rows and the estimate equals the full-sample one.
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=3,
                                                  subset_size=1000)
    assert mean == pytest.approx(_mmd2_direct(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-10)

  def test_subsets_average_direct_estimates(self):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(25, 4)) * 1.5
    mean, std = metrics.kernel_inception_distance(x, y, num_subsets=5,
                                                  subset_size=8, seed=3)
    sampler = np.random.default_rng(3)
    vals = []
    for _ in range(5):
      xs = x[sampler.choice(30, 8, replace=False)]
      ys = y[sampler.choice(25, 8, replace=False)]
      vals.append(_mmd2_direct(xs, ys))
    assert mean == pytest.approx(np.mean(vals), rel=1e-10)
    assert std == pytest.approx(np.std(vals), rel=1e-8)

  def test_same_distribution_near_zero(self):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    mean, _ = metrics.kernel_inception_distance(x, y, num_subsets=10,
                                                subset_size=200)
    assert abs(mean) < 0.05


class TestInceptionScore:

  def test_uniform_predictions_score_one(self):
    mean, std = metrics.inception_score(np.zeros((50, 1008)), num_splits=5)
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.0)

  def test_one_hot_spread_over_k_classes_scores_k(self):
    k, per_class = 7, 4
    probs = np.tile(np.eye(k), (per_class, 1))  # Each split sees all classes.
    mean, std = metrics.inception_score(probs, num_splits=per_class,
                                        from_logits=False)
    assert mean == pytest.approx(k, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)

  def test_logits_and_probabilities_agree(self):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 10)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    a = metrics.inception_score(logits, num_splits=4)
    b = metrics.inception_score(probs, num_splits=4, from_logits=False)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def _pr_brute_force(real, fake, k):
  def radii(x):
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.sort(d, axis=1)[:, k]

  def coverage(q, ref, r):
    d = np.linalg.norm(q[:, None] - ref[None], axis=-1)
    return np.mean(np.any(d <= r[None], axis=1))

  return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


class TestPrecisionRecall:

  def test_toy_points_on_a_line(self):
    real = np.stack([np.arange(10.0), np.zeros(10)], 1)
    # Inside the real manifold: 0.5 (ball of 0 has radius 3) and 4.5;
    # outside: 30 and 50 (the largest real radius is 3, around 0 and 9).
    fake = np.array([[0.5, 0], [30, 0], [4.5, 0], [50, 0]])
    precision, recall = metrics.precision_recall(real, fake, k=3,
                                                 batch_size=3)
    assert precision == pytest.approx(0.5)
    # Fake radii (k=3 of 4 points) are 49.5, 29.5, 45.5, 49.5: the ball of
    # 0.5 covers every real point.
    assert recall == pytest.approx(1.0)

  def test_identical_and_disjoint_sets(self):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 6)).astype(np.float32)
    assert metrics.precision_recall(real, real, k=3) == (1.0, 1.0)
    p, r = metrics.precision_recall(real, real + 100.0, k=3)
    assert (p, r) == (0.0, 0.0)

  def test_matches_brute_force(self):
    rng = np.random.default_rng(1)
    real = rng.normal(size=(37, 5))
    fake = rng.normal(size=(29, 5)) * 1.3 + 0.4
    got = metrics.precision_recall(real, fake, k=3, batch_size=8)
    np.testing.assert_allclose(got, _pr_brute_force(real, fake, 3))


class TestPairedMetrics:

  def test_identical_images(self):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 24, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(paired.ssim(x, x), 1.0, rtol=1e-5)
    assert np.all(np.isinf(paired.psnr(x, x)))
    np.testing.assert_array_equal(paired.l1_error(x, x), 0.0)

  def test_psnr_and_l1_of_known_error(self):
    a = np.zeros((2, 16, 16, 3), np.float32)
    b = np.full_like(a, 0.1)
    b[1] = 0.01
    # rtol 1e-4: a float32 mean of 768 equal values is exact only to the
    # accumulated rounding of its sum, ~1e-5 relative when summed in order.
    np.testing.assert_allclose(paired.psnr(a, b), [20.0, 40.0], rtol=1e-4)
    np.testing.assert_allclose(paired.l1_error(a, b), [0.1, 0.01], rtol=1e-4)

  def test_value_range_maps_to_unit_interval(self):
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(2, 20, 20, 1)).astype(np.float32)
    b = rng.uniform(size=(2, 20, 20, 1)).astype(np.float32)
    for fn in (paired.l1_error, paired.psnr, paired.ssim):
      np.testing.assert_allclose(fn(a * 2 - 1, b * 2 - 1, (-1, 1)),
                                 fn(a, b), rtol=1e-4)

  def test_ssim_matches_numpy_reference(self):
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(2, 32, 28, 3))
    # Correlated pair, so SSIM is far from 0 and from 1.
    b = np.clip(a + rng.normal(scale=0.2, size=a.shape), 0, 1)
    got = paired.ssim(a.astype(np.float32), b.astype(np.float32))
    ref = [reference.ssim_numpy(a[i], b[i]) for i in range(2)]
    np.testing.assert_allclose(got, ref, atol=2e-5)
    assert 0.2 < got.min() and got.max() < 0.95

  def test_dm_pix_ssim_and_psnr_match_numpy_reference(self):
    # Small random images, both the jittable and the host functions.
    rng = np.random.default_rng(4)
    a = rng.uniform(size=(3, 13, 17, 2))
    b = np.clip(a + rng.normal(scale=0.15, size=a.shape), 0, 1)
    ref_ssim = [reference.ssim_numpy(a[i], b[i]) for i in range(3)]
    ref_psnr = -10 * np.log10(((a - b) ** 2).mean(axis=(1, 2, 3)))
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    got = jax.jit(paired.batch_metrics)(a32, b32)
    np.testing.assert_allclose(got["ssim"], ref_ssim, atol=2e-5)
    np.testing.assert_allclose(got["psnr"], ref_psnr, rtol=1e-5)
    np.testing.assert_allclose(paired.ssim(a32, b32), ref_ssim, atol=2e-5)
    np.testing.assert_allclose(paired.psnr(a32, b32), ref_psnr, rtol=1e-5)
    # Constant images: the variance terms cancel, so SSIM is the luminance
    # term alone, (2xy + C1) / (x^2 + y^2 + C1) (up to float32 rounding of
    # the zero variances against C2 = 9e-4).
    x = np.full((1, 12, 12, 1), 0.2, np.float32)
    y = np.full_like(x, 0.6)
    c1 = 0.01 ** 2
    want = (2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1)
    np.testing.assert_allclose(paired.ssim(x, y), [want], atol=2e-4)
    np.testing.assert_allclose(jax.jit(paired.batch_metrics)(x, y)["ssim"],
                               [want], atol=2e-4)
    # Identical images: PSNR inf on the host, capped in the jitted version.
    assert np.isinf(paired.psnr(x, x)).all()
    np.testing.assert_allclose(paired.batch_metrics(x, x)["psnr"],
                               paired.PSNR_CAP)

  def test_paired_metrics_summary(self):
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(4, 16, 16, 3)).astype(np.uint8)
    b = rng.integers(0, 256, size=(4, 16, 16, 3)).astype(np.uint8)
    out = paired.paired_metrics(a, b, value_range=(0, 255))
    assert set(out) == {"l1", "l1_std", "psnr", "psnr_std", "ssim",
                        "ssim_std"}
    assert all(isinstance(v, float) for v in out.values())
    l1 = np.abs(a / 255.0 - b / 255.0).mean((1, 2, 3))
    assert out["l1"] == pytest.approx(l1.mean(), rel=1e-5)
    assert out["l1_std"] == pytest.approx(l1.std(), rel=1e-4)


class TestRebatch:

  def test_fixed_blocks_padding_and_limit(self):
    batches = [np.full((n, 2, 2, 3), i, np.uint8)
               for i, n in enumerate([3, 4, 1, 4])]
    blocks = list(features._rebatch(batches, 4, None))
    assert [n for _, n in blocks] == [4, 4, 4]
    assert all(b.shape == (4, 2, 2, 3) for b, _ in blocks)
    flat = np.concatenate([b[:n] for b, n in blocks])[:, 0, 0, 0]
    np.testing.assert_array_equal(flat, [0] * 3 + [1] * 4 + [2] + [3] * 4)
    limited = list(features._rebatch(batches, 4, 6))
    assert [n for _, n in limited] == [4, 2]
    np.testing.assert_array_equal(limited[-1][0][2:], 0)  # Zero padding.


class TestStatisticsIO:

  def test_save_load_roundtrip_and_cache_path(self, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 4))
    stats = statistics.InceptionStatistics(
        mu=x.mean(0), sigma=np.cov(x, rowvar=False), num_images=10,
        features=x.astype(np.float32), resize_mode="bicubic-pil",
        normalization="tf")
    path = statistics.reference_statistics_path(
        "celeb a", "train", 64, "bicubic-pil", cache_dir=tmp_path)
    assert path.name == "celeb_a-train-64-bicubic-pil-tf.npz"
    statistics.save_statistics(stats, path)
    back = statistics.load_statistics(path)
    np.testing.assert_array_equal(back.sigma, stats.sigma)
    np.testing.assert_array_equal(back.features, stats.features)
    assert back.logits is None and back.num_images == 10
    assert (back.resize_mode, back.normalization) == ("bicubic-pil", "tf")
    metrics_out = statistics.distribution_metrics(back, stats, kid_subsets=2)
    assert metrics_out["fid"] == pytest.approx(0.0, abs=1e-9)
    assert set(metrics_out) == {"fid", "kid", "kid_std", "precision",
                                "recall"}

  def test_mismatched_preprocessing_is_rejected(self):
    s = statistics.InceptionStatistics(np.zeros(2), np.eye(2), 2,
                                       resize_mode="bilinear-tf")
    t = statistics.InceptionStatistics(np.zeros(2), np.eye(2), 2,
                                       resize_mode="bicubic-pil")
    with pytest.raises(ValueError, match="resize_mode"):
      statistics.distribution_metrics(s, t)
