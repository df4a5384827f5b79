"""Exact lowerings of the 4x4 and 3x3 stride-2 up/down-sampling convolutions.

Every function here computes the same linear map as its reference
(`upconv_transpose` = `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
padding='SAME')`, `downconv_conv` = PyTorch Conv2d(k=4, s=2, p=1);
`upconv3_transpose` = PyTorch ConvTranspose2d(k=3, s=2, p=1,
output_padding=1), `downconv3_conv` = PyTorch Conv2d(k=3, s=2, p=1)); they
differ only in how XLA lowers the forward pass and the gradients. The
subpixel, matmul, taps and space-to-depth forms take either kernel size (the
kernel's shape says which); the mixed ones are per size.
jaxgen/models/layers.py chooses between them per backend and explains why.
"""

import functools
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

# Per spatial axis, output phase a (0 or 1) of a 2x transposed conv with a
# k-tap kernel w is y[2m + a] = sum of w[t] x[m + d] over the (tap t, input
# offset d) pairs _UP_TAPS[k][a], with x zero outside [0, H):
#   k=4 ('SAME', PyTorch p=1):  y[2m] = w[0] x[m-1] + w[2] x[m],
#                               y[2m+1] = w[1] x[m] + w[3] x[m+1];
#   k=3 (p=1, output_padding=1): y[2m] = w[1] x[m],
#                               y[2m+1] = w[0] x[m] + w[2] x[m+1].
# A phase's taps are every other one of w, its offsets consecutive.
_UP_TAPS = {
    4: (((0, -1), (2, 0)), ((1, 0), (3, 1))),
    3: (((1, 0),), ((0, 0), (2, 1))),
}


def _up_pad(k: int):
  """(before, after) zero padding of x that kernel size k's offsets read."""
  offsets = [d for taps in _UP_TAPS[k] for _, d in taps]
  return -min(offsets), max(offsets)


def _phase_taps(taps) -> slice:
  """The kernel taps of one phase along one axis (every other tap)."""
  return slice(taps[0][0], taps[-1][0] + 1, 2)


def _interleave_phases(phase, n: int, h: int, w: int, cout: int) -> Array:
  """Depth-to-space: output pixel (2m+a, 2l+b) is phase(a, b)[:, m, l]."""
  rows = [jnp.stack([phase(a, b) for b in range(2)], axis=3)  # N H W b O
          for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)


def _phase_kernel(kernel: Array, a: int, b: int) -> Array:
  """Taps of output phase (a, b): a (<=2, <=2, Cin, Cout) slice of kernel."""
  taps = _UP_TAPS[kernel.shape[0]]
  return kernel[_phase_taps(taps[a]), _phase_taps(taps[b])]


def _subpixel_phases(x: Array, kernel: Array) -> Array:
  """Four stride-1 convs, one per output phase, then depth-to-space."""
  n, h, w, _ = x.shape
  taps = _UP_TAPS[kernel.shape[0]]
  # Phase a reads x[m + d] for its offsets d: pad -d_first before, d_last after.
  pad = lambda a: (-taps[a][0][1], taps[a][-1][1])
  phase = lambda a, b: lax.conv_general_dilated(
      x, _phase_kernel(kernel, a, b), (1, 1), (pad(a), pad(b)),
      dimension_numbers=_DN)
  return _interleave_phases(phase, n, h, w, kernel.shape[-1])


def _subpixel_merged(x: Array, kernel: Array) -> Array:
  """One stride-1 conv giving all phases as 4*Cout channels."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  taps = _UP_TAPS[kernel.shape[0]]
  lo, hi = _up_pad(kernel.shape[0])
  # The window is x[m-lo..m+hi]; phase a's taps sit at its offsets + lo.
  place = lambda a: (taps[a][0][1] + lo, hi - taps[a][-1][1])
  k = jnp.stack([
      jnp.pad(_phase_kernel(kernel, a, b), (place(a), place(b), (0, 0), (0, 0)))
      for a in range(2) for b in range(2)
  ], axis=-2).reshape(lo + hi + 1, lo + hi + 1, cin, 4 * cout)
  z = lax.conv_general_dilated(x, k, (1, 1), ((lo, hi), (lo, hi)),
                               dimension_numbers=_DN)  # channels (a, b, O)
  z = z.reshape(n, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, 2 * h, 2 * w, cout)


def upconv_subpixel(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, computed as stride-1 convs + depth-to-space.

  Output phase (a, b) applies its taps (see `_UP_TAPS`) to the window of x
  at its offsets: for 4x4 four 2x2 convs; for 3x3 a 1x1, a 1x2, a 2x1 and a
  2x2 conv. Wide layers run one conv per phase (exactly the needed
  multiply-adds); thin ones (Cout <= 8) one conv with zero taps (4x4: 3x3,
  3x3: 2x2) giving all phases as 4*Cout channels.
  For 4x4, one 2x2 conv with 4*Cout outputs on an (H+1)-grid plus shifted
  slices is exact too but measured slower on CPU (and with the padding inside
  the conv XLA swaps its kernel-gradient operands into a slow generic loop).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) kernel, k = 4 or 3, HWIO, as stored by
      nn.ConvTranspose / UpConv.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  if kernel.shape[-1] <= _MERGED_MAX_FEATURES:
    return _subpixel_merged(x, kernel)
  return _subpixel_phases(x, kernel)


def _sum_of_taps(tap_term, x: Array, kernel: Array) -> Array:
  """Output of the transposed conv as phases of per-tap terms.

  Args:
    tap_term: (th, tw, rows, cols) -> the contribution of kernel tap (th, tw)
      to its phase: rows/cols slice the input padded by `_up_pad`.
    x: (N, H, W, Cin) input (for its shape).
    kernel: (k, k, Cin, Cout) kernel (for its shape).

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, _ = x.shape
  taps = _UP_TAPS[kernel.shape[0]]
  lo, _ = _up_pad(kernel.shape[0])
  phase = lambda a, b: sum(
      tap_term(th, tw, slice(lo + dh, lo + dh + h), slice(lo + dw, lo + dw + w))
      for th, dh in taps[a] for tw, dw in taps[b])
  return _interleave_phases(phase, n, h, w, kernel.shape[-1])


def _pad_hw(x: Array, pad) -> Array:
  return jnp.pad(x, ((0, 0), pad, pad, (0, 0)))


def upconv_matmul(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, as one matmul then shifted adds (col2im).

  Every padded input pixel is multiplied by all k*k taps at once,
  Z = pad(x) @ K with K of shape (Cin, k*k*Cout); output phase (a, b) then
  sums the Z planes of its taps, shifted by their offsets (`_UP_TAPS`).
  Forward and both gradients are plain GEMMs (XLA:CPU runs those near
  PyTorch's speed), at the cost of a (H+2)(W+2)*16*Cout (4x4) or
  (H+1)(W+1)*9*Cout (3x3) intermediate.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) HWIO kernel, k = 4 or 3.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, cin = x.shape
  k, cout = kernel.shape[0], kernel.shape[-1]
  xp = _pad_hw(x, _up_pad(k))
  kk = kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
  z = jnp.einsum("nhwc,cd->nhwd", xp, kk)
  z = z.reshape(n, xp.shape[1], xp.shape[2], k, k, cout)
  return _sum_of_taps(lambda th, tw, rows, cols: z[:, rows, cols, th, tw],
                      x, kernel)


def downconv_conv(x: Array, kernel: Array) -> Array:
  """Reference stride-2 4x4 conv with padding 1 (PyTorch Conv2d(4, 2, 1))."""
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


def _down_size(h: int, k: int) -> int:
  """Output size of the stride-2 conv with padding 1 and a k-tap kernel."""
  return (h + 2 - k) // 2 + 1


def _space_to_depth_padded(x: Array, k: int) -> Array:
  """Pads by one before, to 2*(output size + 1) after, then 2x2 s2d.

  The padded size is what the 2x2 conv over the result reads: for k=4 and
  odd sizes that drops a never-read last pad row/col, for k=3 and odd sizes
  it adds one that only the zero tap w[3] of the 4x4 form reads.
  """
  n, h, w, cin = x.shape
  ho, wo = _down_size(h, k), _down_size(w, k)
  xp = jnp.pad(x, ((0, 0), (1, 2 * ho + 1 - h), (1, 2 * wo + 1 - w), (0, 0)))
  z = xp.reshape(n, ho + 1, 2, wo + 1, 2, cin).transpose(0, 1, 3, 2, 4, 5)
  return z.reshape(n, ho + 1, wo + 1, 4 * cin)  # channels ordered (p, s, I)


def _kernel_as_4x4(kernel: Array) -> Array:
  """A 3x3 kernel as 4x4 with zero last row and column (4x4 unchanged)."""
  pad = 4 - kernel.shape[0]
  if not pad:
    return kernel
  return jnp.pad(kernel, ((0, pad), (0, pad), (0, 0), (0, 0)))


def downconv_space_to_depth(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`, as space-to-depth + a stride-1 2x2 conv.

  With xp = x padded by one, y[o] = sum_k w[k] xp[2o+k]; writing k = 2q+p,
  that is sum_{q,p} w[2q+p] z[o+q, p] with z[i, p] = xp[2i+p], a 2x2 stride-1
  VALID conv over the space-to-depth of xp. A 3x3 kernel is the 4x4 one with
  a zero last tap (w[3] = 0: 16/9 of the multiply-adds). For odd sizes the
  trailing padding is trimmed or extended to keep the padded size even
  (`_space_to_depth_padded`).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) HWIO kernel, k = 4 or 3.

  Returns:
    (N, (H+2-k)//2+1, (W+2-k)//2+1, Cout) output.
  """
  z = _space_to_depth_padded(x, kernel.shape[0])
  cin, cout = kernel.shape[2:]
  # (kh=2q+p, kw=2r+s, I, O) -> (q, r, p, s, I, O) to match z's channels.
  k = _kernel_as_4x4(kernel).reshape(2, 2, 2, 2, cin, cout)
  k = k.transpose(0, 2, 1, 3, 4, 5).reshape(2, 2, 4 * cin, cout)
  return lax.conv_general_dilated(z, k, (1, 1), "VALID",
                                  dimension_numbers=_DN)


def downconv_matmul(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`: space-to-depth, one matmul, shifted adds.

  In the space-to-depth form y[o] = sum_{q,r} z[o+(q,r)] @ K[q,r]; all four
  (q, r) taps are applied in one GEMM, Z = z @ [K00 K01 K10 K11], and the
  output adds the four Z planes shifted by (q, r). Gradients are GEMMs too.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) HWIO kernel, k = 4 or 3 (as 4x4, see
      `downconv_space_to_depth`).

  Returns:
    (N, (H+2-k)//2+1, (W+2-k)//2+1, Cout) output.
  """
  z = _space_to_depth_padded(x, kernel.shape[0])
  n, hh, wh, _ = z.shape
  cin, cout = kernel.shape[2:]
  # (kh=2q+p, kw=2r+s, I, O) -> rows (p, s, I), columns (q, r, O).
  k = _kernel_as_4x4(kernel).reshape(2, 2, 2, 2, cin, cout)
  k = k.transpose(1, 3, 4, 0, 2, 5).reshape(4 * cin, 4 * cout)
  zz = jnp.einsum("nhwc,cd->nhwd", z, k).reshape(n, hh, wh, 2, 2, cout)
  return sum(zz[:, q:q + hh - 1, r:r + wh - 1, q, r]
             for q in range(2) for r in range(2))


def upconv_taps(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, as k*k GEMMs, one per kernel tap.

  Output phase (a, b) adds, for each of its taps (th, tw), the window of
  pad(x) at the tap's offsets times the contiguous (Cin, Cout) block
  kernel[th, tw]; the gradients are GEMMs with the same blocks. No pass
  re-lays out the kernel, which dominates the innermost layers of a U-Net
  (1-2 px, 512-1024 channels, multi-MB kernels) in every conv lowering.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) HWIO kernel, k = 4 or 3.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  xp = _pad_hw(x, _up_pad(kernel.shape[0]))
  return _sum_of_taps(
      lambda th, tw, rows, cols: jnp.einsum(
          "nhwc,co->nhwo", xp[:, rows, cols], kernel[th, tw]), x, kernel)


def downconv_taps(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`, as k*k GEMMs, one per kernel tap.

  y = sum over taps (kh, kw) of the stride-2 window pad(x)[kh::2, kw::2]
  times the contiguous (Cin, Cout) block kernel[kh, kw] (see `upconv_taps`
  for why).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (k, k, Cin, Cout) HWIO kernel, k = 4 or 3.

  Returns:
    (N, (H+2-k)//2+1, (W+2-k)//2+1, Cout) output.
  """
  _, h, w, _ = x.shape
  k = kernel.shape[0]
  ho, wo = _down_size(h, k), _down_size(w, k)
  xp = _pad_hw(x, (1, 1))
  return sum(
      jnp.einsum("nhwc,co->nhwo",
                 xp[:, kh:kh + 2 * ho - 1:2, kw:kw + 2 * wo - 1:2],
                 kernel[kh, kw])
      for kh in range(k) for kw in range(k))


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


def _shifted_phase_grads(x: Array, kernel: Array, g: Array) -> list:
  """Per kernel tap (in tap order), the phase gradient that tap pairs with x.

  Tap t of output phase a reads x[m + d] (`_UP_TAPS`), so dK[t] = sum_p x[p]
  g_a[p - d]: shifting the (Cout-channel) phase gradients instead of x makes
  each tap's kernel gradient a plain (Cin x N*H*W) @ (N*H*W x Cout) product.

  Args:
    x: (N, H, W, Cin) input of the transposed conv.
    kernel: its (k, k, Cin, Cout) kernel (for the size).
    g: (N, 2H, 2W, Cout) output gradient.

  Returns:
    k*k arrays (N, H, W, Cout): tap (th, tw)'s at index th * k + tw.
  """
  n, h, w, _ = x.shape
  k, cout = kernel.shape[0], g.shape[-1]
  lo, hi = _up_pad(k)
  gp = g.reshape(n, h, 2, w, 2, cout)  # [n, m, a, l, b, o]
  gp = jnp.pad(gp, ((0, 0), (hi, lo), (0, 0), (hi, lo), (0, 0), (0, 0)))
  # Tap t -> (its phase a, its offset d), in tap order.
  where = sorted((t, a, d) for a, taps in enumerate(_UP_TAPS[k])
                 for t, d in taps)
  return [gp[:, hi - dh:hi - dh + h, a, hi - dw:hi - dw + w, b]
          for _, a, dh in where for _, b, dw in where]


def _upconv_kernel_grad_gemm(x: Array, kernel: Array, g: Array) -> Array:
  """d(upconv)/d(kernel) as one GEMM of x with k*k shifted copies of g.

  The whole kernel gradient is one (Cin x N*H*W) @ (N*H*W x k*k*Cout)
  product (`_shifted_phase_grads`), exactly the needed multiply-adds. Used
  for thin layers, where the conv lowering is slow.
  """
  k, cin, cout = kernel.shape[0], x.shape[-1], g.shape[-1]
  shifted = jnp.stack(_shifted_phase_grads(x, kernel, g), axis=3)
  dk = jnp.einsum("nhwc,nhwto->tco", x, shifted)  # shifted: [n, h, w, t, o]
  return dk.reshape(k, k, cin, cout).astype(kernel.dtype)


def _upconv_kernel_grad_taps(x: Array, kernel: Array, g: Array) -> Array:
  """d(upconv)/d(kernel) as k*k GEMMs of x with shifted copies of g.

  Like `_upconv_kernel_grad_gemm`, but one product per tap: for wide layers
  XLA then transposes x once instead of the k*k-times larger stacked copies.
  """
  dk = jnp.stack([jnp.einsum("nhwc,nhwo->co", x, s)
                  for s in _shifted_phase_grads(x, kernel, g)])
  return dk.reshape(kernel.shape).astype(kernel.dtype)


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


# ---------------------------------------------------------------------------
# 3x3 mixed lowerings. The two ops are each other's transpose:
#   <g, downconv3(x, k)> = <x, upconv3(g, F(k))>, F = `_flip_swap`
# (x zero-padded to even sizes), so the input gradient of one is the forward
# of the other and their kernel gradients are the same computation with
# input and cotangent swapped; each pass takes the fastest exact form of
# either op.
# ---------------------------------------------------------------------------


def _flip_swap(kernel: Array) -> Array:
  """Kernel of the transposed op: flipped spatially, in/out swapped."""
  return kernel[::-1, ::-1].swapaxes(2, 3)


# One GEMM with all 9 taps then col2im (`upconv_matmul`) beat the per-phase
# convs while its intermediate, N*H*W*9*Cout values, stayed this small.
_MATMUL3_MAX_VALUES = 3 * 1024 * 1024
# From this many input pixels (N*H*W) of the transposed conv the
# space-to-depth kernel gradient (16/9 of the multiply-adds, no 9 shifted
# copies of the output gradient) beat the per-tap GEMMs.
_S2D3_MIN_PIXELS = 128 * 128


def _upconv3_kernel_grad_s2d(x: Array, kernel: Array, g: Array) -> Array:
  """d(upconv3)/d(kernel) as the space-to-depth form's of the transpose."""
  down_grad = _vjp_kernel(downconv_space_to_depth)
  return _flip_swap(down_grad(g, _flip_swap(kernel), x))


def _upconv3_forms(x_shape, cout: int):
  """The fastest exact (forward, kernel gradient) of upconv3 on CPU.

  Args:
    x_shape: (N, H, W, Cin) of the transposed conv's input.
    cout: its output channels.

  Returns:
    Two functions, (x, kernel) -> y and (x, kernel, g) -> dK.
  """
  n, h, w, _ = x_shape
  forward = (upconv_matmul if n * h * w * 9 * cout <= _MATMUL3_MAX_VALUES
             else _subpixel_phases)
  kernel_grad = (_upconv_kernel_grad_taps if n * h * w < _S2D3_MIN_PIXELS
                 else _upconv3_kernel_grad_s2d)
  return forward, kernel_grad


# One custom VJP per choice of forms, made once. The op picks the forms from
# its shapes when called; its backward pass runs the ones picked then.
@functools.lru_cache(maxsize=None)
def _up3_mixed(forward, kernel_grad):
  return _with_vjp(forward, _vjp_x(upconv3_transpose), kernel_grad)


@functools.lru_cache(maxsize=None)
def _down3_mixed(up_forward, up_kernel_grad):
  """downconv3 with its gradients from the transposed problem's forms."""

  def grad_x(x, kernel, g):  # The transposed conv of g, cropped for odd x.
    return up_forward(g, _flip_swap(kernel))[:, :x.shape[1], :x.shape[2]]

  def kernel_grad(x, kernel, g):  # x, padded to 2x g's size, as cotangent.
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return _flip_swap(up_kernel_grad(g, _flip_swap(kernel), x))

  return _with_vjp(downconv3_conv, grad_x, kernel_grad)


def upconv3_mixed(x: Array, kernel: Array) -> Array:
  """Same as `upconv3_transpose`; each pass lowered the fastest way on CPU.

  Forward: `upconv_matmul` for small outputs, else the per-phase convs (a
  1x1, a 1x2, a 2x1 and a 2x2 conv). Input gradient: the transpose's own, a
  plain stride-2 conv. Kernel gradient: one GEMM per tap
  (`_upconv_kernel_grad_taps`), or from 128*128 input pixels the
  space-to-depth kernel gradient of the transposed problem.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (3, 3, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  return _up3_mixed(*_upconv3_forms(x.shape, kernel.shape[-1]))(x, kernel)


def downconv3_mixed(x: Array, kernel: Array) -> Array:
  """Same as `downconv3_conv`; each pass lowered the fastest way on CPU.

  Forward: the strided conv's. Input gradient: `upconv3_mixed`'s forward of
  the output gradient (instead of the lhs-dilated conv XLA would run).
  Kernel gradient: `upconv3_mixed`'s, with input and cotangent swapped.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (3, 3, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-1)//2+1, (W-1)//2+1, Cout) output.
  """
  n, h, w, cin = x.shape
  g_shape = (n, _down_size(h, 3), _down_size(w, 3), kernel.shape[-1])
  return _down3_mixed(*_upconv3_forms(g_shape, cin))(x, kernel)
