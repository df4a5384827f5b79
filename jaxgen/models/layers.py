"""Shared layers. The choice of up/down-sampling implementation lives here.

`UpConv` is a stride-2 transposed convolution (PyTorch ConvTranspose2d with
kernel 4, stride 2, padding 1: output is exactly 2x the input). `DownConv` is
the matching stride-2 convolution (PyTorch Conv2d with kernel 4, stride 2,
padding 1). Models use them instead of `nn.ConvTranspose` / `nn.Conv` so that
the implementation can be switched in one place without changing what the
model computes or its parameters.

Implementations (same params, same math, only the lowering differs):

  UpConv   'transpose': `lax.conv_transpose` (what `nn.ConvTranspose` runs).
           'subpixel' : the kernel is split at call time into its four output
                        phases, each a stride-1 2x2 conv, then depth-to-space
                        (thin layers, Cout <= 8: one 3x3 conv, 4*Cout outputs).
           'matmul'   : one GEMM with all 16 taps, then shifted adds (col2im).
  DownConv 'conv'          : `lax.conv_general_dilated` with stride 2.
           'space_to_depth': pad, space-to-depth, stride-1 2x2 conv.
           'matmul'        : space-to-depth, one GEMM, shifted adds.

Why: XLA:CPU runs convs with lhs or window dilation (the conv transpose
forward and its kernel gradient) in a slow generic loop; stride-1 convs go
to YNNPACK/Eigen.

Measured on the shared 2-core dev CPU, jax 0.10.2 vs torch 2.13 (2 threads),
jit(value_and_grad) of sum(y * g), batch 8, medians of interleaved repeats
(`benchmarks/layers_bench.py`; load average was 5-11, so the absolute ms are
inflated and only same-run ratios mean much). torch_ms / jax_ms:
  up 128->64 @32:    transpose 0.02, subpixel 1.78
  up 1024->512 @8:   transpose 0.07, subpixel 1.19
  up 64->3 @64:      transpose 0.89, subpixel 1.56
  up 512->128 @32:   subpixel 0.42-0.49; up 256->64 @64: subpixel 0.59
                     (the stride-1 kernel-gradient convs dominate there)
  up 'matmul': 0.16-0.65, slower than 'subpixel' in every case.
  down 'conv': 0.49-1.36 (below 1 for the 64..256-channel mid layers);
       'space_to_depth' 1.1-2x slower than 'conv' except Cin=3 (2.36);
       'matmul' about equal to 'conv'.
U-Net-128 generator train step (`benchmarks/unet_bench.py`, one run of 3
steps at load ~10; torch 10.1 s/step there vs 0.75 s on an idle machine):
  up=subpixel down=conv 1.20x torch; subpixel/matmul 0.90x; matmul/conv
  0.94x; matmul/matmul 0.73x; transpose/conv (plain Flax) 0.10x.
So the CPU default is 'subpixel' + 'conv'; GPU/TPU keep the native ops.
XLA_FLAGS tried (xnnpack off, onednn on, onednn custom call, single-threaded
Eigen, thunk runtime off, which this jaxlib ignores as deprecated): none
changed these timings beyond the noise, and none fixes the conv transpose.
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Array = Any

_DN = ("NHWC", "HWIO", "NHWC")

UP_IMPLS = ("transpose", "subpixel", "matmul", "mixed")
DOWN_IMPLS = ("conv", "space_to_depth", "matmul", "mixed")

# Per-backend defaults (numbers in the module docstring). This table is the
# single place to change the choice; unknown backends get the reference op.
_DEFAULTS = {
    "up": {"cpu": "mixed", "gpu": "transpose", "tpu": "transpose"},
    "down": {"cpu": "mixed", "gpu": "conv", "tpu": "conv"},
}
_VALID = {"up": UP_IMPLS, "down": DOWN_IMPLS}
_REFERENCE = {"up": "transpose", "down": "conv"}


def default_impl(kind: str, backend: Optional[str] = None) -> str:
  """Returns the default implementation for `kind` on a backend.

  Args:
    kind: 'up' (UpConv) or 'down' (DownConv).
    backend: a JAX backend name; defaults to `jax.default_backend()`.

  Returns:
    The implementation name to use.
  """
  if kind not in _DEFAULTS:
    raise ValueError(f"Unknown kind {kind!r}; valid: {sorted(_DEFAULTS)}.")
  backend = backend or jax.default_backend()
  return _DEFAULTS[kind].get(backend, _REFERENCE[kind])


def resolve_impl(kind: str, impl: Optional[str]) -> str:
  """Maps a configured impl (None/'auto' mean default) to a valid name.

  Args:
    kind: 'up' or 'down'.
    impl: the requested implementation, None or 'auto'.

  Returns:
    A valid implementation name for `kind`.

  Raises:
    ValueError: if `impl` is not a known implementation for `kind`.
  """
  if impl is None or impl == "auto":
    return default_impl(kind)
  if kind not in _VALID:
    raise ValueError(f"Unknown kind {kind!r}; valid: {sorted(_VALID)}.")
  if impl not in _VALID[kind]:
    raise ValueError(
        f"Unknown {kind}sampling impl {impl!r}; valid: "
        f"{', '.join(_VALID[kind])} (or 'auto'/None for the default).")
  return impl


# ---------------------------------------------------------------------------
# Functional forms. `x` is NHWC, `kernel` is (4, 4, Cin, Cout) HWIO.
# ---------------------------------------------------------------------------


def upconv_transpose(x: Array, kernel: Array) -> Array:
  """Reference 2x transposed conv, identical to nn.ConvTranspose 'SAME'."""
  return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_DN)


# Below this many output channels the four per-phase convs are too thin to
# use the CPU well, and one 3x3 conv with 4*Cout outputs (zero taps included)
# is faster despite 2.25x the multiply-adds.
_MERGED_MAX_FEATURES = 8


def _phase_kernel(kernel: Array, a: int, b: int) -> Array:
  """Taps of output phase (a, b): a (2, 2, Cin, Cout) slice of the kernel."""
  return kernel[a::2, b::2]


def _subpixel_phases(x: Array, kernel: Array) -> Array:
  """Four stride-1 2x2 convs, one per output phase, then depth-to-space."""
  n, h, w, _ = x.shape
  rows = []
  for a in range(2):
    cols = []
    for b in range(2):
      # Phase a reads x[m-1+a], x[m+a]: pad one before (a=0) or after (a=1).
      cols.append(lax.conv_general_dilated(
          x, _phase_kernel(kernel, a, b), (1, 1), ((1 - a, a), (1 - b, b)),
          dimension_numbers=_DN))
    rows.append(jnp.stack(cols, axis=3))  # N H W b O
  y = jnp.stack(rows, axis=2)  # N H a W b O
  return y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])


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
  rows = []
  for a in range(2):
    cols = []
    for b in range(2):
      cols.append(sum(z[:, a + i:a + i + h, b + j:b + j + w, a + 2 * i,
                        b + 2 * j] for i in range(2) for j in range(2)))
    rows.append(jnp.stack(cols, axis=3))  # N H W b O
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)


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


def upconv_mixed(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`; each pass lowered the fastest way on CPU.

  Forward: `upconv_subpixel`. Input gradient: the transpose's own, a plain
  stride-2 conv. Kernel gradient: the per-phase convs' (wide layers) or
  `_upconv_kernel_grad_gemm` (Cout <= 8).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  if kernel.shape[-1] <= _MERGED_MAX_FEATURES:
    return _up_mixed_thin(x, kernel)
  return _up_mixed_wide(x, kernel)


# At or below this many input channels the space-to-depth form is faster in
# every pass (a 3-channel image gains 2x); above it only its input gradient
# is (no lhs-dilated conv), and only on large inputs: below this many pixels
# the strided conv's own gradients were as fast or faster.
_S2D_MAX_INPUTS = 8
_S2D_MIN_PIXELS = 64 * 64


def downconv_mixed(x: Array, kernel: Array) -> Array:
  """Same as `downconv_conv`; each pass lowered the fastest way on CPU.

  Forward and kernel gradient: the strided conv's. Input gradient: the
  space-to-depth form's (stride-1 convs, instead of the lhs-dilated conv XLA
  would run) from 64x64 inputs up. Thin inputs (Cin <= 8) use the
  space-to-depth form throughout.

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) HWIO kernel.

  Returns:
    (N, (H-2)//2+1, (W-2)//2+1, Cout) output.
  """
  if x.shape[-1] <= _S2D_MAX_INPUTS:
    return downconv_space_to_depth(x, kernel)
  if x.shape[1] * x.shape[2] < _S2D_MIN_PIXELS:
    return downconv_conv(x, kernel)
  return _down_mixed(x, kernel)


UP_FNS = {
    "transpose": upconv_transpose,
    "subpixel": upconv_subpixel,
    "matmul": upconv_matmul,
    "mixed": upconv_mixed,
}
DOWN_FNS = {
    "conv": downconv_conv,
    "space_to_depth": downconv_space_to_depth,
    "matmul": downconv_matmul,
    "mixed": downconv_mixed,
}


def upconv(x: Array, kernel: Array, impl: Optional[str] = None) -> Array:
  """Functional UpConv (no bias) with the given or default implementation."""
  return UP_FNS[resolve_impl("up", impl)](x, kernel)


def downconv(x: Array, kernel: Array, impl: Optional[str] = None) -> Array:
  """Functional DownConv (no bias) with the given or default implementation."""
  return DOWN_FNS[resolve_impl("down", impl)](x, kernel)


# ---------------------------------------------------------------------------
# Modules.
# ---------------------------------------------------------------------------


class _Conv4x4(nn.Module):
  """Shared body: a (4,4,Cin,Cout) kernel param, optional bias, an impl."""
  features: int
  use_bias: bool = True
  impl: Optional[str] = None
  dtype: Optional[jnp.dtype] = None
  param_dtype: jnp.dtype = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  _kind = ""  # Set by subclasses: 'up' or 'down'.

  @nn.compact
  def __call__(self, x: Array) -> Array:
    fn = (UP_FNS if self._kind == "up" else DOWN_FNS)[
        resolve_impl(self._kind, self.impl)]
    kernel = self.param("kernel", self.kernel_init,
                        (4, 4, x.shape[-1], self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = fn(x, kernel)
    if bias is not None:
      y = y + bias
    return y


class UpConv(_Conv4x4):
  """2x upsampling transposed convolution, kernel 4x4 (HWIO param `kernel`).

  Computes exactly `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
  padding='SAME')` (= PyTorch ConvTranspose2d(k=4, s=2, p=1) with the kernel
  flipped spatially and its in/out axes swapped). Output is (N, 2H, 2W, C).

  Attributes:
    features: output channels.
    use_bias: whether to add a bias.
    impl: 'transpose', 'subpixel', or None/'auto' for the backend default.
    dtype: compute dtype (params stay in `param_dtype`).
  """
  _kind = "up"


class DownConv(_Conv4x4):
  """Stride-2 convolution, kernel 4x4, padding 1 (PyTorch Conv2d(4, 2, 1)).

  Output is (N, (H-2)//2+1, (W-2)//2+1, C), i.e. H/2 for even H.

  Attributes:
    features: output channels.
    use_bias: whether to add a bias.
    impl: 'conv', 'space_to_depth', or None/'auto' for the backend default.
    dtype: compute dtype (params stay in `param_dtype`).
  """
  _kind = "down"
