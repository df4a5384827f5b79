"""Paired image metrics for translation tasks: L1, PSNR and SSIM.

Each metric compares a batch of outputs with the matching targets and returns
one value per image, so callers can report mean ± std (`mean_std`,
`paired_metrics`). Images are NHWC (a single HWC image is treated as a batch
of one) and are first mapped to [0, 1] with `value_range`, so all numbers are
on the [0, 1] scale whatever the data range: L1 is the mean absolute error,
PSNR uses a peak of 1, SSIM uses data range 1.

SSIM and PSNR are dm-pix's. SSIM follows Wang et al. (2004), as does
skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False): an 11x11 Gaussian window with sigma 1.5, K1 =
0.01, K2 = 0.03, 'valid' filtering (no padding), per channel, and the map is
averaged over pixels and channels (tests/test_metrics.py checks both against
a numpy implementation).

PSNR of identical images is +inf (MSE 0) in the host functions; no cap is
applied, so a batch mean is +inf too if any pair is identical. The jittable
`batch_metrics` caps it at `PSNR_CAP`.
"""

import functools
from typing import Dict, Tuple

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

ValueRange = Tuple[float, float]

def _to_unit(x, value_range: ValueRange) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4:
    raise ValueError(f"Expected NHWC or HWC images, got shape {x.shape}.")
  lo, hi = value_range
  return (x - lo) / (hi - lo)


def _check_pair(a: jax.Array, b: jax.Array):
  if a.shape != b.shape:
    raise ValueError(f"Image shapes differ: {a.shape} vs {b.shape}.")


def l1_error(a, b, value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """Per-image mean absolute error on the [0, 1] scale.

  Args:
    a: [N, H, W, C] images.
    b: [N, H, W, C] images.
    value_range: (low, high) of the input values, mapped to [0, 1].

  Returns:
    [N] float64 array.
  """
  a, b = _to_unit(a, value_range), _to_unit(b, value_range)
  _check_pair(a, b)
  return np.asarray(jnp.mean(jnp.abs(a - b), axis=(1, 2, 3)), np.float64)


def psnr(a, b, value_range: ValueRange = (0.0, 1.0)) -> np.ndarray:
  """Per-image PSNR in dB with peak 1 (after mapping to [0, 1]).

  Args:
    a: [N, H, W, C] images.
    b: [N, H, W, C] images.
    value_range: (low, high) of the input values, mapped to [0, 1].

  Returns:
    [N] float64 array; +inf where the images are identical.
  """
  a, b = _to_unit(a, value_range), _to_unit(b, value_range)
  _check_pair(a, b)
  return np.asarray(dm_pix.psnr(a, b), np.float64)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _ssim(a, b, filter_size, filter_sigma, k1, k2):
  return dm_pix.ssim(a, b, max_val=1.0, filter_size=filter_size,
                     filter_sigma=filter_sigma, k1=k1, k2=k2)


SSIM_WINDOW = 11
PSNR_CAP = 100.0  # dB, for identical images inside jitted steps.


def batch_metrics(a: jax.Array, b: jax.Array) -> dict:
  """Per-image L1, PSNR and SSIM of two [0, 1] batches, jittable.

  For use inside jitted eval steps (the numpy functions are for whole sets
  on the host). PSNR is capped at `PSNR_CAP` dB for identical images so that
  averages stay finite; SSIM is dm-pix's (Gaussian 11x11, sigma 1.5,
  VALID) and omitted for images smaller than its window.

  Args:
    a: [N, H, W, C] images in [0, 1].
    b: [N, H, W, C] images in [0, 1].

  Returns:
    {"l1", "psnr"[, "ssim"]}, each [N] float32.
  """
  _check_pair(a, b)
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  out = {"l1": jnp.mean(jnp.abs(a - b), axis=(1, 2, 3)),
         "psnr": jnp.minimum(dm_pix.psnr(a, b), PSNR_CAP)}
  if min(a.shape[1:3]) >= SSIM_WINDOW:
    out["ssim"] = dm_pix.ssim(a, b, max_val=1.0, filter_size=SSIM_WINDOW)
  return out


def ssim(a, b, value_range: ValueRange = (0.0, 1.0), filter_size: int = 11,
         filter_sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> np.ndarray:
  """Per-image SSIM with a Gaussian window (see the module docstring).

  Args:
    a: [N, H, W, C] images, H and W >= filter_size.
    b: [N, H, W, C] images.
    value_range: (low, high) of the input values, mapped to [0, 1].
    filter_size: Gaussian window size.
    filter_sigma: Gaussian window standard deviation.
    k1: luminance stabiliser constant.
    k2: contrast stabiliser constant.

  Returns:
    [N] float64 array; 1 for identical images.
  """
  a, b = _to_unit(a, value_range), _to_unit(b, value_range)
  _check_pair(a, b)
  if min(a.shape[1:3]) < filter_size:
    raise ValueError(f"Images smaller than the {filter_size}px SSIM window.")
  return np.asarray(
      _ssim(a, b, filter_size, float(filter_sigma), float(k1), float(k2)),
      np.float64)


def mean_std(values) -> Tuple[float, float]:
  """Returns (mean, std with ddof=0) of per-image values as floats."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std())


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
  """Formats a summary as 'mean ± std'."""
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def paired_metrics(outputs, targets,
                   value_range: ValueRange = (0.0, 1.0)) -> Dict[str, float]:
  """L1, PSNR and SSIM of a batch, as means and standard deviations.

  Args:
    outputs: [N, H, W, C] predicted images.
    targets: [N, H, W, C] ground-truth images.
    value_range: (low, high) of the input values, e.g. (-1, 1) for tanh
      outputs or (0, 255) for uint8.

  Returns:
    {'l1', 'l1_std', 'psnr', 'psnr_std', 'ssim', 'ssim_std'} as floats.
  """
  out = {}
  for name, fn in (("l1", l1_error), ("psnr", psnr), ("ssim", ssim)):
    mean, std = mean_std(fn(outputs, targets, value_range))
    out[name], out[f"{name}_std"] = mean, std
  return out
