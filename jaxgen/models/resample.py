"""Exact lowerings of the 4x4 and 3x3 stride-2 up/down-sampling convolutions.

Every function here computes the same linear map as its reference
(`upconv_transpose` = `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
padding='SAME')`, `downconv_conv` = PyTorch Conv2d(k=4, s=2, p=1);
`upconv3_transpose` = PyTorch ConvTranspose2d(k=3, s=2, p=1,
output_padding=1), `downconv3_conv` = PyTorch Conv2d(k=3, s=2, p=1)); they
differ only in how XLA lowers the forward pass and the gradients. The
subpixel, matmul, taps and space-to-depth forms take either kernel size (the
kernel's shape says which). jaxgen/models/resample_mixed.py pairs them
per pass (forward from one form, gradients from others), per kernel size.
jaxgen/models/layers.py chooses between them per backend and explains why.
"""

from typing import Any

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
MERGED_MAX_FEATURES = 8

# Per spatial axis, output phase a (0 or 1) of a 2x transposed conv with a
# k-tap kernel w is y[2m + a] = sum of w[t] x[m + d] over the (tap t, input
# offset d) pairs UP_TAPS[k][a], with x zero outside [0, H):
#   k=4 ('SAME', PyTorch p=1):  y[2m] = w[0] x[m-1] + w[2] x[m],
#                               y[2m+1] = w[1] x[m] + w[3] x[m+1];
#   k=3 (p=1, output_padding=1): y[2m] = w[1] x[m],
#                               y[2m+1] = w[0] x[m] + w[2] x[m+1].
# A phase's taps are every other one of w, its offsets consecutive.
UP_TAPS = {
    4: (((0, -1), (2, 0)), ((1, 0), (3, 1))),
    3: (((1, 0),), ((0, 0), (2, 1))),
}


def up_pad(k: int):
  """(before, after) zero padding of x that kernel size k's offsets read."""
  offsets = [d for taps in UP_TAPS[k] for _, d in taps]
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
  taps = UP_TAPS[kernel.shape[0]]
  return kernel[_phase_taps(taps[a]), _phase_taps(taps[b])]


def subpixel_phases(x: Array, kernel: Array) -> Array:
  """Four stride-1 convs, one per output phase, then depth-to-space."""
  n, h, w, _ = x.shape
  taps = UP_TAPS[kernel.shape[0]]
  # Phase a reads x[m + d] for its offsets d: pad -d_first before, d_last after.
  pad = lambda a: (-taps[a][0][1], taps[a][-1][1])
  phase = lambda a, b: lax.conv_general_dilated(
      x, _phase_kernel(kernel, a, b), (1, 1), (pad(a), pad(b)),
      dimension_numbers=_DN)
  return _interleave_phases(phase, n, h, w, kernel.shape[-1])


def subpixel_merged(x: Array, kernel: Array) -> Array:
  """One stride-1 conv giving all phases as 4*Cout channels."""
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  taps = UP_TAPS[kernel.shape[0]]
  lo, hi = up_pad(kernel.shape[0])
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

  Output phase (a, b) applies its taps (see `UP_TAPS`) to the window of x
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
  if kernel.shape[-1] <= MERGED_MAX_FEATURES:
    return subpixel_merged(x, kernel)
  return subpixel_phases(x, kernel)


def _sum_of_taps(tap_term, x: Array, kernel: Array) -> Array:
  """Output of the transposed conv as phases of per-tap terms.

  Args:
    tap_term: (th, tw, rows, cols) -> the contribution of kernel tap (th, tw)
      to its phase: rows/cols slice the input padded by `up_pad`.
    x: (N, H, W, Cin) input (for its shape).
    kernel: (k, k, Cin, Cout) kernel (for its shape).

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, _ = x.shape
  taps = UP_TAPS[kernel.shape[0]]
  lo, _ = up_pad(kernel.shape[0])
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
  sums the Z planes of its taps, shifted by their offsets (`UP_TAPS`).
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
  xp = _pad_hw(x, up_pad(k))
  kk = kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
  z = jnp.einsum("nhwc,cd->nhwd", xp, kk)
  z = z.reshape(n, xp.shape[1], xp.shape[2], k, k, cout)
  return _sum_of_taps(lambda th, tw, rows, cols: z[:, rows, cols, th, tw],
                      x, kernel)


def downconv_conv(x: Array, kernel: Array) -> Array:
  """Reference stride-2 4x4 conv with padding 1 (PyTorch Conv2d(4, 2, 1))."""
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


def down_size(h: int, k: int) -> int:
  """Output size of the stride-2 conv with padding 1 and a k-tap kernel."""
  return (h + 2 - k) // 2 + 1


def _space_to_depth_padded(x: Array, k: int) -> Array:
  """Pads by one before, to 2*(output size + 1) after, then 2x2 s2d.

  The padded size is what the 2x2 conv over the result reads: for k=4 and
  odd sizes that drops a never-read last pad row/col, for k=3 and odd sizes
  it adds one that only the zero tap w[3] of the 4x4 form reads.
  """
  n, h, w, cin = x.shape
  ho, wo = down_size(h, k), down_size(w, k)
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
  xp = _pad_hw(x, up_pad(kernel.shape[0]))
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
  ho, wo = down_size(h, k), down_size(w, k)
  xp = _pad_hw(x, (1, 1))
  return sum(
      jnp.einsum("nhwc,co->nhwo",
                 xp[:, kh:kh + 2 * ho - 1:2, kw:kw + 2 * wo - 1:2],
                 kernel[kh, kw])
      for kh in range(k) for kw in range(k))
