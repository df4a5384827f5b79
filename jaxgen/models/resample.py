"""Exact lowerings of the 4x4 stride-2 up/down-sampling convolutions.

Every function here computes the same linear map as its reference
(`upconv_transpose` = `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
padding='SAME')`, `downconv_conv` = PyTorch Conv2d(k=4, s=2, p=1)); they
differ only in how XLA lowers the forward pass and the gradients.
jaxgen/models/layers.py chooses between them per backend and explains why.
"""

from typing import Any

import jax
from jax import lax
import jax.numpy as jnp

Array = Any

_DN = ("NHWC", "HWIO", "NHWC")

# ---------------------------------------------------------------------------
# Functional forms. `x` is NHWC, `kernel` is (4, 4, Cin, Cout) HWIO.
# ---------------------------------------------------------------------------


def upconv_transpose(x: Array, kernel: Array) -> Array:
  """Reference 2x transposed conv, identical to nn.ConvTranspose 'SAME'."""
  return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_DN)


# ---------------------------------------------------------------------------
# 3x3 references (CycleGAN's ResNet generator). `kernel` is (3, 3, Cin, Cout).
# ---------------------------------------------------------------------------


def upconv3_transpose(x: Array, kernel: Array) -> Array:
  """Reference 2x transposed conv with a 3x3 kernel.

  PyTorch ConvTranspose2d(k=3, s=2, p=1, output_padding=1) with its weight
  flipped spatially and in/out axes swapped: the input dilated by 2 is
  padded by k-1-p = 1 before and k-1-p+output_padding = 2 after. The output
  is exactly (N, 2H, 2W, Cout).
  """
  return lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)),
                            dimension_numbers=_DN)


def downconv3_conv(x: Array, kernel: Array) -> Array:
  """Reference stride-2 3x3 conv, padding 1 (PyTorch Conv2d(3, 2, 1)).

  Output is (N, (H-1)//2+1, (W-1)//2+1, Cout), i.e. H/2 for even H.
  """
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


# Below this many output channels the four per-phase convs are too thin to
# use the CPU well, and one 3x3 conv with 4*Cout outputs (zero taps included)
# is faster despite 2.25x the multiply-adds.
_MERGED_MAX_FEATURES = 8


def _interleave_phases(phase, n: int, h: int, w: int, cout: int) -> Array:
  """Depth-to-space: output pixel (2m+a, 2l+b) is phase(a, b)[:, m, l]."""
  rows = [jnp.stack([phase(a, b) for b in range(2)], axis=3)  # N H W b O
          for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)


def _phase_kernel(kernel: Array, a: int, b: int) -> Array:
  """Taps of output phase (a, b): a (2, 2, Cin, Cout) slice of the kernel."""
  return kernel[a::2, b::2]


def _subpixel_phases(x: Array, kernel: Array) -> Array:
  """Four stride-1 2x2 convs, one per output phase, then depth-to-space."""
  n, h, w, _ = x.shape
  # Phase a reads x[m-1+a], x[m+a]: pad one before (a=0) or after (a=1).
  phase = lambda a, b: lax.conv_general_dilated(
      x, _phase_kernel(kernel, a, b), (1, 1), ((1 - a, a), (1 - b, b)),
      dimension_numbers=_DN)
  return _interleave_phases(phase, n, h, w, kernel.shape[-1])


def _subpixel_merged(x: Array, kernel: Array) -> Array:
  """One stride-1 3x3 conv giving all phases as 4*Cout channels."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  # Phase a's two taps sit at rows (a, a+1) of the 3x3 window x[m-1..m+1].
  k = jnp.stack([
      jnp.pad(_phase_kernel(kernel, a, b),
              ((a, 1 - a), (b, 1 - b), (0, 0), (0, 0)))
      for a in range(2) for b in range(2)
  ], axis=-2).reshape(3, 3, cin, 4 * cout)  # channels ordered (a, b, O)
  z = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                               dimension_numbers=_DN)
  z = z.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, 2 * h, 2 * w, cout)


def upconv_subpixel(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, computed as stride-1 convs + depth-to-space.

  With SAME padding the transposed conv gives, per spatial axis,
    y[2m]   = w[0] x[m-1] + w[2] x[m]
    y[2m+1] = w[1] x[m]   + w[3] x[m+1]
  so output phase a applies taps kernel[a::2] to the window starting at
  x[m-1+a]. Wide layers run one 2x2 conv per phase (exactly the needed
  multiply-adds); thin ones (Cout <= 8) one 3x3 conv with zero taps.
  One 2x2 conv with 4*Cout outputs on an (H+1)-grid plus shifted slices is
  exact too but measured slower on CPU (and with the padding inside the conv
  XLA swaps its kernel-gradient operands into a slow generic loop).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) kernel, HWIO, as stored by nn.ConvTranspose.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  if kernel.shape[-1] <= _MERGED_MAX_FEATURES:
    return _subpixel_merged(x, kernel)
  return _subpixel_phases(x, kernel)


def upconv_matmul(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, as one matmul then shifted adds (col2im).

  Every padded input pixel is multiplied by all 16 taps at once,
  Z = pad(x) @ K with K of shape (Cin, 16*Cout); output phase (a, b) then
  sums the four Z planes of its taps (a+2i, b+2j), shifted by (a+i, b+j).
  Forward and both gradients are plain GEMMs (XLA:CPU runs those near
  PyTorch's speed), at the cost of a (H+2)(W+2)*16*Cout intermediate.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  k = kernel.transpose(2, 0, 1, 3).reshape(cin, 16 * cout)
  z = jnp.einsum("nhwc,cd->nhwd", xp, k).reshape(n, h + 2, w + 2, 4, 4, cout)
  phase = lambda a, b: sum(
      z[:, a + i:a + i + h, b + j:b + j + w, a + 2 * i, b + 2 * j]
      for i in range(2) for j in range(2))
  return _interleave_phases(phase, n, h, w, cout)


def downconv_conv(x: Array, kernel: Array) -> Array:
  """Reference stride-2 4x4 conv with padding 1 (PyTorch Conv2d(4, 2, 1))."""
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


def _space_to_depth_padded(x: Array) -> Array:
  """Pads by one (dropping a never-read last row/col if odd), then 2x2 s2d."""
  n, h, w, cin = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1 - h % 2), (1, 1 - w % 2), (0, 0)))
  hh, wh = xp.shape[1] // 2, xp.shape[2] // 2
  z = xp.reshape(n, hh, 2, wh, 2, cin).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, hh, wh, 4 * cin)  # channels ordered (p, s, I)


def downconv_space_to_depth(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`, as space-to-depth + a stride-1 2x2 conv.

  With xp = x padded by one, y[o] = sum_k w[k] xp[2o+k]; writing k = 2q+p,
  that is sum_{q,p} w[2q+p] z[o+q, p] with z[i, p] = xp[2i+p], a 2x2 stride-1
  VALID conv over the space-to-depth of xp. For odd sizes the trailing pad row
  is never read by PyTorch's output (floor((H-2)/2)+1 rows), so it is dropped
  to keep the padded size even.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-2)//2+1, (W-2)//2+1, Cout) output.
  """
  z = _space_to_depth_padded(x)
  cin, cout = kernel.shape[2:]
  # (kh=2q+p, kw=2r+s, I, O) -> (q, r, p, s, I, O) to match z's channels.
  k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  k = k.reshape(2, 2, 4 * cin, cout)
  return lax.conv_general_dilated(z, k, (1, 1), "VALID",
                                  dimension_numbers=_DN)


def downconv_matmul(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`: space-to-depth, one matmul, shifted adds.

  In the space-to-depth form y[o] = sum_{q,r} z[o+(q,r)] @ K[q,r]; all four
  (q, r) taps are applied in one GEMM, Z = z @ [K00 K01 K10 K11], and the
  output adds the four Z planes shifted by (q, r). Gradients are GEMMs too.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-2)//2+1, (W-2)//2+1, Cout) output.
  """
  z = _space_to_depth_padded(x)
  n, hh, wh, _ = z.shape
  cin, cout = kernel.shape[2:]
  # (kh=2q+p, kw=2r+s, I, O) -> rows (p, s, I), columns (q, r, O).
  k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(1, 3, 4, 0, 2, 5)
  k = k.reshape(4 * cin, 4 * cout)
  zz = jnp.einsum("nhwc,cd->nhwd", z, k).reshape(n, hh, wh, 2, 2, cout)
  return sum(zz[:, q:q + hh - 1, r:r + wh - 1, q, r]
             for q in range(2) for r in range(2))


def upconv_taps(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, as 16 GEMMs, one per kernel tap.

  Output phase (a, b) adds, for its four taps (a+2i, b+2j), the window
  pad(x)[a+i:, b+j:] times the contiguous (Cin, Cout) block kernel[a+2i,
  b+2j]; the gradients are GEMMs with the same blocks. No pass re-lays out
  the kernel, which dominates the innermost layers of a U-Net (1-2 px,
  512-1024 channels, multi-MB kernels) in every conv lowering.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  phase = lambda a, b: sum(
      jnp.einsum("nhwc,co->nhwo", xp[:, a + i:a + i + h, b + j:b + j + w],
                 kernel[a + 2 * i, b + 2 * j])
      for i in range(2) for j in range(2))
  return _interleave_phases(phase, n, h, w, kernel.shape[-1])


def downconv_taps(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`, as 16 GEMMs, one per kernel tap.

  y = sum over taps (kh, kw) of the stride-2 window pad(x)[kh::2, kw::2]
  times the contiguous (Cin, Cout) block kernel[kh, kw] (see `upconv_taps`
  for why).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-2)//2+1, (W-2)//2+1, Cout) output.
  """
  _, h, w, _ = x.shape
  ho, wo = (h - 2) // 2 + 1, (w - 2) // 2 + 1
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(
      jnp.einsum("nhwc,co->nhwo",
                 xp[:, kh:kh + 2 * ho - 1:2, kw:kw + 2 * wo - 1:2],
                 kernel[kh, kw])
      for kh in range(4) for kw in range(4))


# ---------------------------------------------------------------------------
# Mixed lowerings: the forward of one exact form, each gradient from another.
# All forms compute the same linear map, so any pairing is exact; custom_vjp
# only picks which lowering XLA compiles for each pass.
# ---------------------------------------------------------------------------


def _vjp_x(fn):
  return lambda x, kernel, g: jax.vjp(lambda x_: fn(x_, kernel), x)[1](g)[0]


def _vjp_kernel(fn):
  return lambda x, kernel, g: jax.vjp(lambda k_: fn(x, k_), kernel)[1](g)[0]


def _with_vjp(forward, grad_x, grad_kernel):
  """`forward(x, kernel)` whose VJP is (grad_x(x, k, g), grad_kernel(x, k, g))."""

  @jax.custom_vjp
  def fn(x, kernel):
    return forward(x, kernel)

  def fn_fwd(x, kernel):
    return forward(x, kernel), (x, kernel)

  def fn_bwd(res, g):
    x, kernel = res
    return grad_x(x, kernel, g), grad_kernel(x, kernel, g)

  fn.defvjp(fn_fwd, fn_bwd)
  return fn


def _upconv_kernel_grad_gemm(x: Array, kernel: Array, g: Array) -> Array:
  """d(upconv)/d(kernel) as one GEMM of x with 16 shifted copies of g.

  Tap t = a + 2i of output phase a reads x[m - 1 + a + i] (see
  `upconv_subpixel`), so dK[t] = sum_p x[p] g_a[p + 1 - a - i]: shifting the
  (small, Cout-channel) phase gradients instead of x makes the whole kernel
  gradient one (Cin x N*H*W) @ (N*H*W x 16*Cout) product, exactly the needed
  multiply-adds. Used for thin layers, where the conv lowering is slow.
  """
  n, h, w, cin = x.shape
  cout = g.shape[-1]
  gp = g.reshape(n, h, 2, w, 2, cout)  # [n, m, a, l, b, o]
  gp = jnp.pad(gp, ((0, 0), (1, 1), (0, 0), (1, 1), (0, 0), (0, 0)))
  cols = []
  for kh in range(4):
    a, s = kh % 2, 1 - kh % 2 - kh // 2
    for kw in range(4):
      b, r = kw % 2, 1 - kw % 2 - kw // 2
      cols.append(gp[:, 1 + s:1 + s + h, a, 1 + r:1 + r + w, b])
  shifted = jnp.stack(cols, axis=3)  # [n, h, w, 16, o]
  dk = jnp.einsum("nhwc,nhwto->tco", x, shifted)
  return dk.reshape(4, 4, cin, cout).astype(kernel.dtype)


_up_mixed_wide = _with_vjp(_subpixel_phases, _vjp_x(upconv_transpose),
                           _vjp_kernel(_subpixel_phases))
_up_mixed_thin = _with_vjp(_subpixel_merged, _vjp_x(upconv_transpose),
                           _upconv_kernel_grad_gemm)
_down_mixed = _with_vjp(downconv_conv, _vjp_x(downconv_space_to_depth),
                        _vjp_kernel(downconv_conv))
_down_mixed_small = _with_vjp(downconv_conv, _vjp_x(downconv_taps),
                              _vjp_kernel(downconv_conv))


def upconv_mixed(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`; each pass lowered the fastest way on CPU.

  Forward: `upconv_subpixel`. Input gradient: the transpose's own, a plain
  stride-2 conv (except on 1x1 inputs, where that conv is slow and the
  per-phase convs' is used). Kernel gradient: the per-phase convs' (wide
  layers) or `_upconv_kernel_grad_gemm` (Cout <= 8).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  if kernel.shape[-1] <= _MERGED_MAX_FEATURES:
    return _up_mixed_thin(x, kernel)
  if x.shape[1] * x.shape[2] == 1:
    return _subpixel_phases(x, kernel)  # Its own gradients, unmixed.
  return _up_mixed_wide(x, kernel)


# At or below this many input channels the space-to-depth form is faster in
# every pass (a 3-channel image gains 2x); above it only its input gradient
# is (no lhs-dilated conv), and only on large inputs: below this many pixels
# in the batch (N*H*W) the strided conv's own gradients were as fast.
_S2D_MAX_INPUTS = 8
_S2D_MIN_PIXELS = 128 * 128


def downconv_mixed(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`; each pass lowered the fastest way on CPU.

  Forward and kernel gradient: the strided conv's. Input gradient: the
  space-to-depth form's (stride-1 convs, instead of the lhs-dilated conv XLA
  would run) from 128*128 batch pixels up; on 3x3-4x4 inputs, where XLA's
  lhs-dilated conv was 5x slower than anything else, `downconv_taps`'s.
  Thin inputs (Cin <= 8) use the space-to-depth form throughout, inputs of
  at most 2x2 pixels `downconv_taps` (XLA lowered the strided conv of a
  U-Net's innermost 2x2 -> 1x1 layer with a slow layout).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-2)//2+1, (W-2)//2+1, Cout) output.
  """
  n, h, w, cin = x.shape
  if cin <= _S2D_MAX_INPUTS:
    return downconv_space_to_depth(x, kernel)
  if h * w <= 4:
    return downconv_taps(x, kernel)
  if h * w <= 16:
    return _down_mixed_small(x, kernel)
  if n * h * w < _S2D_MIN_PIXELS:
    return downconv_conv(x, kernel)
  return _down_mixed(x, kernel)
