"""Mixed lowerings of the stride-2 up/down-sampling convolutions.

Each op here computes the same linear map as its reference in
jaxgen/models/resample.py and takes the forward pass from one exact form
there and each gradient from another (a `jax.custom_vjp`), because on CPU
the fastest lowering differs per pass and per shape; the constants below
are the measured crossovers (benchmarks/layers_bench.py).
jaxgen/models/layers.py selects these as the `mixed` implementation.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxgen.models import resample

Array = Any

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
  """`forward(x, kernel)` with the VJP (grad_x(x, k, g), grad_kernel(x, k,
  g))."""

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

  Tap t of output phase a reads x[m + d] (`resample.UP_TAPS`), so dK[t] =
  sum_p x[p] g_a[p - d]: shifting the (Cout-channel) phase gradients instead
  of x makes each tap's kernel gradient a plain (Cin x N*H*W) @ (N*H*W x
  Cout) product.

  Args:
    x: (N, H, W, Cin) input of the transposed conv.
    kernel: its (k, k, Cin, Cout) kernel (for the size).
    g: (N, 2H, 2W, Cout) output gradient.

  Returns:
    k*k arrays (N, H, W, Cout): tap (th, tw)'s at index th * k + tw.
  """
  n, h, w, _ = x.shape
  k, cout = kernel.shape[0], g.shape[-1]
  lo, hi = resample.up_pad(k)
  gp = g.reshape(n, h, 2, w, 2, cout)  # [n, m, a, l, b, o]
  gp = jnp.pad(gp, ((0, 0), (hi, lo), (0, 0), (hi, lo), (0, 0), (0, 0)))
  # Tap t -> (its phase a, its offset d), in tap order.
  where = sorted((t, a, d) for a, taps in enumerate(resample.UP_TAPS[k])
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


_up_mixed_wide = _with_vjp(resample.subpixel_phases,
                           _vjp_x(resample.upconv_transpose),
                           _vjp_kernel(resample.subpixel_phases))
_up_mixed_thin = _with_vjp(resample.subpixel_merged,
                           _vjp_x(resample.upconv_transpose),
                           _upconv_kernel_grad_gemm)
_down_mixed = _with_vjp(resample.downconv_conv,
                        _vjp_x(resample.downconv_space_to_depth),
                        _vjp_kernel(resample.downconv_conv))
_down_mixed_small = _with_vjp(resample.downconv_conv,
                              _vjp_x(resample.downconv_taps),
                              _vjp_kernel(resample.downconv_conv))


def upconv_mixed(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`; each pass lowered the fastest way on CPU.

  Forward: `resample.upconv_subpixel`. Input gradient: the transpose's own, a
  plain stride-2 conv (except on 1x1 inputs, where that conv is slow and the
  per-phase convs' is used). Kernel gradient: the per-phase convs' (wide layers)
  or `_upconv_kernel_grad_gemm` (Cout <= 8).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  if kernel.shape[-1] <= resample.MERGED_MAX_FEATURES:
    return _up_mixed_thin(x, kernel)
  if x.shape[1] * x.shape[2] == 1:
    return resample.subpixel_phases(x, kernel)  # Its own gradients, unmixed.
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
    return resample.downconv_space_to_depth(x, kernel)
  if h * w <= 4:
    return resample.downconv_taps(x, kernel)
  if h * w <= 16:
    return _down_mixed_small(x, kernel)
  if n * h * w < _S2D_MIN_PIXELS:
    return resample.downconv_conv(x, kernel)
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
  down_grad = _vjp_kernel(resample.downconv_space_to_depth)
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
  small = n * h * w * 9 * cout <= _MATMUL3_MAX_VALUES
  forward = resample.upconv_matmul if small else resample.subpixel_phases
  kernel_grad = (_upconv_kernel_grad_taps if n * h * w < _S2D3_MIN_PIXELS
                 else _upconv3_kernel_grad_s2d)
  return forward, kernel_grad


# One custom VJP per choice of forms, made once. The op picks the forms from
# its shapes when called; its backward pass runs the ones picked then.
@functools.lru_cache(maxsize=None)
def _up3_mixed(forward, kernel_grad):
  return _with_vjp(forward, _vjp_x(resample.upconv3_transpose), kernel_grad)


@functools.lru_cache(maxsize=None)
def _down3_mixed(up_forward, up_kernel_grad):
  """downconv3 with its gradients from the transposed problem's forms."""

  def grad_x(x, kernel, g):  # The transposed conv of g, cropped for odd x.
    return up_forward(g, _flip_swap(kernel))[:, :x.shape[1], :x.shape[2]]

  def kernel_grad(x, kernel, g):  # x, padded to 2x g's size, as cotangent.
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    return _flip_swap(up_kernel_grad(g, _flip_swap(kernel), x))

  return _with_vjp(resample.downconv3_conv, grad_x, kernel_grad)


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
  g_shape = (n, resample.down_size(h, 3), resample.down_size(w, 3),
             kernel.shape[-1])
  return _down3_mixed(*_upconv3_forms(g_shape, cin))(x, kernel)
