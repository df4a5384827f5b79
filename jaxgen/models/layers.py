"""Shared layers. The choice of up/down-sampling implementation lives here.

`UpConv` is a stride-2 transposed convolution (PyTorch ConvTranspose2d with
kernel 4, stride 2, padding 1: output is exactly 2x the input). `DownConv` is
the matching stride-2 convolution (PyTorch Conv2d with kernel 4, stride 2,
padding 1). Models use them instead of `nn.ConvTranspose` / `nn.Conv` so that
the implementation can be switched in one place without changing what the
model computes or its parameters.

Implementations (same params, same math, only the lowering differs):

  UpConv   'transpose': `lax.conv_transpose` (what `nn.ConvTranspose` runs).
           'subpixel' : the (4,4,Cin,Cout) kernel is rearranged at call time
                        into a stride-1 2x2 conv with 4*Cout outputs (one per
                        output phase) followed by depth-to-space.
  DownConv 'conv'          : `lax.conv_general_dilated` with stride 2.
           'space_to_depth': pad, space-to-depth, then a stride-1 2x2 conv
                             over 4*Cin channels with the kernel rearranged.

Why: XLA:CPU lowers convolutions with lhs dilation (conv transpose forward and
the input gradient of any strided conv) and window dilation (kernel gradient
of strided convs) to a slow generic loop, while stride-1 undilated convs go to
Eigen. The rewritten forms only use stride-1 convs.

Measured on the 2-core CPU dev machine (jit(value_and_grad(sum)), batch 8,
medians, interleaved; torch 2.13 with 2 threads; noisy shared machine). See
`benchmarks/layers_bench.py` for the full table. FILLED IN BELOW.
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Array = Any

_DN = ("NHWC", "HWIO", "NHWC")

UP_IMPLS = ("transpose", "subpixel")
DOWN_IMPLS = ("conv", "space_to_depth")

# Per-backend defaults. This table is the single place to change the choice.
_DEFAULTS = {
    "up": {"cpu": "subpixel", "gpu": "transpose", "tpu": "transpose"},
    "down": {"cpu": "space_to_depth", "gpu": "conv", "tpu": "conv"},
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


def upconv_subpixel(x: Array, kernel: Array) -> Array:
  """Same as `upconv_transpose`, computed as a stride-1 conv + depth-to-space.

  With SAME padding the transposed conv gives, per spatial axis,
    y[2m]   = w[0] x[m-1] + w[2] x[m]
    y[2m+1] = w[1] x[m]   + w[3] x[m+1]
  so output phase a uses taps kernel[a::2] on the window starting at
  x[m-1+a]. A single 2x2 conv over x padded by one on each side yields all
  four phases (as 4*Cout channels) on an (H+1, W+1) grid; phase (a, b) is
  that grid shifted by (a, b).

  Args:
    x: (N, H, W, Cin) input.
    kernel: (4, 4, Cin, Cout) kernel, HWIO, as stored by nn.ConvTranspose.

  Returns:
    (N, 2H, 2W, Cout) output.
  """
  n, h, w, _ = x.shape
  cout = kernel.shape[-1]
  # (kh=2q+a, kw=2r+b, I, O) -> (q, r, I, a, b, O): phases as output channels.
  k = kernel.reshape(2, 2, 2, 2, kernel.shape[2], cout)  # q a r b I O
  k = k.transpose(0, 2, 4, 1, 3, 5).reshape(2, 2, kernel.shape[2], 4 * cout)
  z = lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)),
                               dimension_numbers=_DN)
  z = z.reshape(n, h + 1, w + 1, 2, 2, cout)
  # Depth-to-space with a per-phase (a, b) shift of the grid.
  rows = []
  for a in range(2):
    cols = [z[:, a:a + h, b:b + w, a, b, :] for b in range(2)]
    rows.append(jnp.stack(cols, axis=3))  # N H W b O
  y = jnp.stack(rows, axis=2)  # N H a W b O
  return y.reshape(n, 2 * h, 2 * w, cout)


def downconv_conv(x: Array, kernel: Array) -> Array:
  """Reference stride-2 4x4 conv with padding 1 (PyTorch Conv2d(4, 2, 1))."""
  return lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                  dimension_numbers=_DN)


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
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  xp = jnp.pad(x, ((0, 0), (1, 1 - h % 2), (1, 1 - w % 2), (0, 0)))
  hh, wh = xp.shape[1] // 2, xp.shape[2] // 2
  z = xp.reshape(n, hh, 2, wh, 2, cin).transpose(0, 1, 3, 2, 4, 5)
  z = z.reshape(n, hh, wh, 4 * cin)
  # (kh=2q+p, kw=2r+s, I, O) -> (q, r, p, s, I, O) to match z's channels.
  k = kernel.reshape(2, 2, 2, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  k = k.reshape(2, 2, 4 * cin, cout)
  return lax.conv_general_dilated(z, k, (1, 1), "VALID",
                                  dimension_numbers=_DN)


UP_FNS = {"transpose": upconv_transpose, "subpixel": upconv_subpixel}
DOWN_FNS = {"conv": downconv_conv, "space_to_depth": downconv_space_to_depth}


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
