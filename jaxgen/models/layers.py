"""Shared layers. The choice of up/down-sampling implementation lives here.

`UpConv` is a stride-2 transposed convolution (PyTorch ConvTranspose2d with
kernel 4, stride 2, padding 1: output is exactly 2x the input). `DownConv` is
the matching stride-2 convolution (PyTorch Conv2d with kernel 4, stride 2,
padding 1). With kernel_size=3 (CycleGAN's ResNet generator) they are
PyTorch ConvTranspose2d(3, 2, 1, output_padding=1) (also exactly 2x) and
Conv2d(3, 2, 1). Models use them instead of `nn.ConvTranspose` / `nn.Conv`
so that the implementation can be switched in one place without changing
what the model computes or its parameters.

Implementations (same params, same math, only the lowering differs):

  UpConv   'transpose': `lax.conv_transpose` (what `nn.ConvTranspose` runs).
           'subpixel' : the kernel is split at call time into its four output
                        phases, each a stride-1 2x2 conv, then depth-to-space
                        (thin layers, Cout <= 8: one 3x3 conv, 4*Cout outputs).
           'matmul'   : one GEMM with all 16 taps, then shifted adds (col2im).
           'taps'     : 16 GEMMs, one per (contiguous) kernel tap.
           'mixed'    : forward, input gradient and kernel gradient each from
                        the fastest of the above (a custom VJP; see
                        `resample_mixed.upconv_mixed`).
  DownConv 'conv'          : `lax.conv_general_dilated` with stride 2.
           'space_to_depth': pad, space-to-depth, stride-1 2x2 conv.
           'matmul'        : space-to-depth, one GEMM, shifted adds.
           'taps'          : 16 GEMMs, one per kernel tap.
           'mixed'         : per-pass choice, as for UpConv (`downconv_mixed`).
  3x3 kernels (`UP3_FNS`, `DOWN3_FNS`), same names and meanings: 'subpixel'
  runs a 1x1, a 1x2, a 2x1 and a 2x2 conv (thin layers: one 2x2 conv with
  4*Cout outputs), 'matmul' / 'taps' use 9 taps, DownConv's 'space_to_depth'
  and 'matmul' the 4x4 forms with a zero last kernel row and column (16/9 of
  the multiply-adds). The two ops are each other's transpose, so 'mixed'
  (`resample_mixed.upconv3_mixed`, `downconv3_mixed`) takes each pass from the
  fastest form of either: UpConv forward 'matmul' (small layers) or per-phase
  convs, input gradient the strided conv; DownConv forward the strided conv,
  input gradient UpConv's forward; both kernel gradients one GEMM per tap, or
  (from 128x128 input pixels of the transposed conv) the space-to-depth conv's.

Why: XLA:CPU runs convs with lhs or window dilation (the conv transpose
forward and kernel gradient, the strided conv's input gradient) in a slow
generic loop, and some tiny-spatial shapes of the 512-1024-channel inner
layers fall into it too; stride-1 convs and GEMMs go to Eigen.

Measured on the shared 2-core AVX-512 dev CPU, jax 0.10.2 vs torch 2.13
(2 threads), with jaxgen's CPU compiler options (jaxgen/backend.py), forward
+ backward, batch 8 (`benchmarks/layers_bench.py`); torch_ms / jax_ms:
  up 256->64 @64:  subpixel 1.26, mixed 1.37 (transpose 0.02)
  up 512->128 @32: subpixel 1.09, mixed 1.10 (transpose 0.02)
  up 64->128 @8:   subpixel 0.73, mixed 1.24
  up 128->3 @128:  subpixel 0.89, mixed 1.03
  down 3->64 @256:   conv 2.15, mixed (space-to-depth) 2.44
  down 64->128 @128: conv 0.77, mixed 1.10
  down 512->512 @4 (fwd+bwd ms): conv 124, taps 26, mixed 12-26.
3x3, batch 1 (CycleGAN's generator at 128 and 256 px, ngf=64), median of 3
runs on the machine shared at load 10-15 (runs differed by up to ~25%):
  down 64->128 @128:  conv 1.46, space_to_depth 1.66, mixed 2.97
  down 64->128 @256:  conv 0.98, space_to_depth 1.15, mixed 1.58
  down 128->256 @64:  conv 2.02, taps 2.15, mixed 2.86
  down 128->256 @128: conv 0.93, taps 0.86, mixed 1.41
  up 256->128 @32:    transpose 0.19, subpixel 2.40, taps 2.72, mixed 3.73
  up 256->128 @64:    transpose 0.06, subpixel 1.22, mixed 1.52
  up 128->64 @64:     transpose 0.17, subpixel 1.80, mixed 2.88
  up 128->64 @128:    transpose 0.05, subpixel 0.89, mixed 1.23 (0.98-1.27)
The tables below pick 'mixed' on CPU; GPU/TPU keep the native ops. 'mixed'
is a custom VJP: reverse mode to any order works (gradient penalties), but
forward mode (`jax.jvp`, `jax.jacfwd`) does not; pass impl='subpixel'/'conv'
(or `--config.model.upsample_impl`) where that is needed. Whole
train steps against PyTorch: `python benchmarks/bench.py`.
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models import resample
from jaxgen.models import resample_mixed

Array = Any

UP_IMPLS = ("transpose", "subpixel", "matmul", "taps", "mixed")
DOWN_IMPLS = ("conv", "space_to_depth", "matmul", "taps", "mixed")

# Per-backend defaults (numbers in the module docstring). This table is the
# single place to change the choice; unknown backends get the reference op.
_DEFAULTS = {
    "up": {"cpu": "mixed", "gpu": "transpose", "tpu": "transpose"},
    "down": {"cpu": "mixed", "gpu": "conv", "tpu": "conv"},
}
_VALID = {"up": UP_IMPLS, "down": DOWN_IMPLS}
_REFERENCE = {"up": "transpose", "down": "conv"}
# Downsampling under second-order differentiation (gradient penalties
# differentiate D's input gradient again): 'mixed' is the fastest first-order
# lowering on CPU but its custom VJP is slow to differentiate; 'matmul' is
# several times faster there (`python benchmarks/penalty_bench.py`).
_SECOND_ORDER_DOWN = {"cpu": "matmul"}


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


def second_order_down_impl(impl: Optional[str],
                           backend: Optional[str] = None) -> Optional[str]:
  """The DownConv lowering for calls that are differentiated twice.

  Args:
    impl: the configured implementation (None/'auto': the backend default).
    backend: a JAX backend name; defaults to `jax.default_backend()`.

  Returns:
    `impl` when set explicitly, else the backend's choice for second-order
    use (the first-order default where it has none).
  """
  if impl not in (None, "auto"):
    return impl
  return _SECOND_ORDER_DOWN.get(backend or jax.default_backend(), impl)


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


UP_FNS = {
    "transpose": resample.upconv_transpose,
    "subpixel": resample.upconv_subpixel,
    "matmul": resample.upconv_matmul,
    "taps": resample.upconv_taps,
    "mixed": resample_mixed.upconv_mixed,
}
DOWN_FNS = {
    "conv": resample.downconv_conv,
    "space_to_depth": resample.downconv_space_to_depth,
    "matmul": resample.downconv_matmul,
    "taps": resample.downconv_taps,
    "mixed": resample_mixed.downconv_mixed,
}


# 3x3 kernels (CycleGAN's ResNet generator): their own lowerings and
# per-backend defaults; the names mean the same as for 4x4.
UP3_FNS = {
    "transpose": resample.upconv3_transpose,
    "subpixel": resample.upconv_subpixel,
    "matmul": resample.upconv_matmul,
    "taps": resample.upconv_taps,
    "mixed": resample_mixed.upconv3_mixed,
}
DOWN3_FNS = {
    "conv": resample.downconv3_conv,
    "space_to_depth": resample.downconv_space_to_depth,
    "matmul": resample.downconv_matmul,
    "taps": resample.downconv_taps,
    "mixed": resample_mixed.downconv3_mixed,
}
_DEFAULTS3 = {
    "up": {"cpu": "mixed", "gpu": "transpose", "tpu": "transpose"},
    "down": {"cpu": "mixed", "gpu": "conv", "tpu": "conv"},
}
KERNEL_SIZES = (3, 4)


def _table(kind: str, kernel_size: int):
  if kernel_size not in KERNEL_SIZES:
    raise ValueError(f"Unsupported {kind}sampling kernel size {kernel_size}; "
                     f"valid: {KERNEL_SIZES}.")
  if kernel_size == 4:
    return UP_FNS if kind == "up" else DOWN_FNS
  return UP3_FNS if kind == "up" else DOWN3_FNS


def resolve_fn(kind: str, impl: Optional[str], kernel_size: int = 4,
               backend: Optional[str] = None):
  """The lowering function for a (kind, impl, kernel size).

  Args:
    kind: 'up' or 'down'.
    impl: the requested implementation; None or 'auto' for the backend
      default of that kernel size.
    kernel_size: 4 (pix2pix layers) or 3 (ResNet generator layers).
    backend: a JAX backend name; defaults to `jax.default_backend()`.

  Returns:
    A function (x, kernel) -> y.

  Raises:
    ValueError: for an unknown kind, impl or kernel size.
  """
  if kernel_size == 4:
    return _table(kind, 4)[resolve_impl(kind, impl)]
  table = _table(kind, kernel_size)
  if impl is None or impl == "auto":
    backend = backend or jax.default_backend()
    impl = _DEFAULTS3[kind].get(backend, _REFERENCE[kind])
  if impl not in table:
    raise ValueError(
        f"Unknown {kind}sampling impl {impl!r} for {kernel_size}x"
        f"{kernel_size} kernels; valid: {', '.join(table)} (or 'auto'/None "
        "for the default).")
  return table[impl]


NORMS = ("batch", "instance", "none")


def make_norm(kind: str, train: bool, dtype=None) -> Callable[[], Callable]:
  """A factory of normalisation layers, called once per layer.

  Args:
    kind: "batch" (BatchNorm, momentum 0.9, running averages in eval),
      "instance" (per-image, per-channel, no affine parameters: PyTorch's
      InstanceNorm2d defaults, as CycleGAN uses) or "none" (identity).
    train: batch statistics (True) or running averages (False); only
      "batch" depends on it.
    dtype: compute dtype.

  Returns:
    A zero-argument callable returning a fresh layer (x -> x').

  Raises:
    ValueError: for an unknown kind.
  """
  if kind == "batch":
    return lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                dtype=dtype)
  if kind == "instance":
    return lambda: nn.InstanceNorm(epsilon=1e-5, use_scale=False,
                                   use_bias=False, dtype=dtype)
  if kind == "none":
    return lambda: (lambda x: x)
  raise ValueError(f"Unknown norm {kind!r}; valid: {', '.join(NORMS)}.")


def upconv(x: Array, kernel: Array, impl: Optional[str] = None) -> Array:
  """Functional UpConv (no bias) with the given or default implementation."""
  return resolve_fn("up", impl, kernel.shape[0])(x, kernel)


def downconv(x: Array, kernel: Array, impl: Optional[str] = None) -> Array:
  """Functional DownConv (no bias) with the given or default implementation."""
  return resolve_fn("down", impl, kernel.shape[0])(x, kernel)


# ---------------------------------------------------------------------------
# Modules.
# ---------------------------------------------------------------------------


class _StridedConv(nn.Module):
  """Shared body: a (k,k,Cin,Cout) kernel param, optional bias, an impl."""
  features: int
  use_bias: bool = True
  impl: Optional[str] = None
  kernel_size: int = 4
  dtype: Optional[jnp.dtype] = None
  param_dtype: jnp.dtype = jnp.float32
  kernel_init: Callable[..., Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Array] = nn.initializers.zeros_init()

  _kind = ""  # Set by subclasses: 'up' or 'down'.

  @nn.compact
  def __call__(self, x: Array) -> Array:
    fn = resolve_fn(self._kind, self.impl, self.kernel_size)
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init,
                        (k, k, x.shape[-1], self.features), self.param_dtype)
    bias = (self.param("bias", self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias,
                                              dtype=self.dtype)
    y = fn(x, kernel)
    if bias is not None:
      y = y + bias
    return y


class UpConv(_StridedConv):
  """2x upsampling transposed convolution, kernel 4x4 (HWIO param `kernel`).

  Computes exactly `nn.ConvTranspose(features, (4, 4), strides=(2, 2),
  padding='SAME')` (= PyTorch ConvTranspose2d(k=4, s=2, p=1) with the kernel
  flipped spatially and its in/out axes swapped). Output is (N, 2H, 2W, C).
  With kernel_size=3: PyTorch ConvTranspose2d(k=3, s=2, p=1,
  output_padding=1), likewise flipped and swapped; also exactly 2x.

  Attributes:
    features: output channels.
    use_bias: whether to add a bias.
    impl: 'transpose', 'subpixel', or None/'auto' for the backend default.
    kernel_size: 4 (default) or 3.
    dtype: compute dtype (params stay in `param_dtype`).
  """
  _kind = "up"


class DownConv(_StridedConv):
  """Stride-2 convolution, kernel 4x4, padding 1 (PyTorch Conv2d(4, 2, 1)).

  Output is (N, (H-2)//2+1, (W-2)//2+1, C), i.e. H/2 for even H. With
  kernel_size=3: PyTorch Conv2d(k=3, s=2, p=1), output (H-1)//2+1.

  Attributes:
    features: output channels.
    use_bias: whether to add a bias.
    impl: 'conv', 'space_to_depth', or None/'auto' for the backend default.
    kernel_size: 4 (default) or 3.
    dtype: compute dtype (params stay in `param_dtype`).
  """
  _kind = "down"
