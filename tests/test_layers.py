"""Tests for jaxgen.models.layers: every impl computes the reference math.

The reference for `UpConv` is flax `nn.ConvTranspose((4, 4), strides=2,
padding='SAME')`, for `DownConv` flax `nn.Conv((4, 4), strides=2,
padding=((1, 1), (1, 1)))`. Outputs and gradients w.r.t. input, kernel and
bias must agree to float32 round-off, and parameters must be interchangeable.
With kernel_size=3 the references are `resample.upconv3_transpose` and
`resample.downconv3_conv`, themselves checked against PyTorch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import layers
from jaxgen.models import resample
from jaxgen.models import resample_mixed

try:
  import torch  # Only used to check the PyTorch layer equivalence.
except ImportError:  # pragma: no cover - depends on the environment.
  torch = None

# (batch, H, W, Cin, Cout): odd and even sizes, Cin != Cout, thin (merged
# 3x3 path, Cout <= 8) and wide (per-phase path) outputs.
SHAPES = [
    (2, 5, 6, 3, 4),
    (3, 8, 8, 5, 2),
    (2, 7, 4, 6, 12),
    (2, 6, 9, 16, 24),
    (1, 1, 1, 4, 16),
    (4, 64, 64, 9, 4),  # downconv_mixed's custom-gradient branch.
    (2, 4, 4, 12, 10),  # downconv_mixed's small-input branch.
    (3, 2, 2, 10, 6),  # ... and its 2x2 branch.
]
RTOL = 2e-5


def _reference(kind, features):
  if kind == "up":
    return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")
  return nn.Conv(features, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))


def _module(kind, features, impl, **kw):
  cls = layers.UpConv if kind == "up" else layers.DownConv
  return cls(features, impl=impl, **kw)


def _impls(kind, kernel_size=4):
  if kernel_size == 3:
    return tuple(layers.UP3_FNS if kind == "up" else layers.DOWN3_FNS)
  return layers.UP_IMPLS if kind == "up" else layers.DOWN_IMPLS


def _random_case(shape, seed=0, kernel_size=4):
  n, h, w, cin, cout = shape
  k = kernel_size
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, h, w, cin)), jnp.float32)
  params = {
      "kernel": jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(cout,)), jnp.float32),
  }
  return x, params


def _value_and_grads(module, params, x):
  """Output and grads of a random projection, so every element matters;
  one compiled forward and backward per module."""
  def fwd(p, x):
    return module.apply({"params": p}, x)

  shape = jax.eval_shape(fwd, params, x)
  proj = np.random.default_rng(1).normal(size=shape.shape).astype(
      shape.dtype)

  @jax.jit
  def run(p, x, proj):
    y, vjp = jax.vjp(fwd, p, x)
    return y, vjp(proj)

  return run(params, x, proj)


def _assert_close(actual, expected, what):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, what
  scale = max(float(np.abs(expected).max()), 1.0)
  err = float(np.abs(actual - expected).max()) / scale
  assert err < RTOL, f"{what}: max relative error {err:.2e}"


# A 4x4 stride-2 conv with padding 1 needs H, W >= 2.
CASES = ([("up", s) for s in SHAPES] +
         [("down", s) for s in SHAPES if min(s[1:3]) >= 2])


@pytest.mark.parametrize("kind,shape", CASES)
def test_impls_match_reference_values_and_grads(kind, shape):
  x, params = _random_case(shape)
  n, h, w, _, cout = shape
  y_ref, g_ref = _value_and_grads(_reference(kind, cout), params, x)
  expect = ((n, 2 * h, 2 * w, cout) if kind == "up" else
            (n, (h - 2) // 2 + 1, (w - 2) // 2 + 1, cout))
  assert y_ref.shape == expect
  for impl in _impls(kind):
    y, g = _value_and_grads(_module(kind, cout, impl), params, x)
    _assert_close(y, y_ref, f"{impl} output")
    _assert_close(g[1], g_ref[1], f"{impl} d/dx")
    _assert_close(g[0]["kernel"], g_ref[0]["kernel"], f"{impl} d/dkernel")
    _assert_close(g[0]["bias"], g_ref[0]["bias"], f"{impl} d/dbias")


def test_every_lowering_branch_exercised():
  # SHAPES must cover the merged (thin) and per-phase (wide) up lowerings and
  # the three branches of downconv_mixed.
  couts = {s[-1] for s in SHAPES}
  assert min(couts) <= resample.MERGED_MAX_FEATURES < max(couts)
  cins = {s[3] for s in SHAPES}
  assert min(cins) <= resample_mixed._S2D_MAX_INPUTS < max(cins)
  pixels = lambda s: s[0] * s[1] * s[2]
  big = [s for s in SHAPES if pixels(s) >= resample_mixed._S2D_MIN_PIXELS and
         s[3] > resample_mixed._S2D_MAX_INPUTS]
  small = [s for s in SHAPES if pixels(s) < resample_mixed._S2D_MIN_PIXELS and
           s[3] > resample_mixed._S2D_MAX_INPUTS]
  assert big and small
  assert any(4 < s[1] * s[2] <= 16 and s[3] > resample_mixed._S2D_MAX_INPUTS
             for s in SHAPES)
  assert any(s[1] * s[2] <= 4 and s[3] > resample_mixed._S2D_MAX_INPUTS
             for s in SHAPES)
  # ... and upconv_mixed's 1x1 branch.
  assert any(s[1] * s[2] == 1 and s[4] > resample.MERGED_MAX_FEATURES
             for s in SHAPES)


@pytest.mark.parametrize("kind", ["up", "down"])
def test_params_identical_across_impls_and_reference(kind):
  x = jnp.zeros((2, 8, 6, 3))
  trees = [
      _module(kind, 5, impl).init(jax.random.PRNGKey(0), x)
      for impl in _impls(kind)
  ]
  trees.append(_reference(kind, 5).init(jax.random.PRNGKey(0), x))
  shapes = [jax.tree.map(jnp.shape, t) for t in trees]
  assert all(s == shapes[0] for s in shapes)
  assert shapes[0]["params"]["kernel"] == (4, 4, 3, 5)
  assert shapes[0]["params"]["bias"] == (5,)
  # Same initializer and RNG stream: values agree too.
  for t in trees[1:]:
    jax.tree.map(np.testing.assert_array_equal, t, trees[0])


@pytest.mark.parametrize("kind", ["up", "down"])
def test_no_bias(kind):
  x, params = _random_case((2, 4, 4, 3, 5))
  del params["bias"]
  for impl in _impls(kind):
    m = _module(kind, 5, impl, use_bias=False)
    assert set(jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"]
               ) == {"kernel"}
    y = m.apply({"params": params}, x)
    ref = _reference(kind, 5).apply(
        {"params": dict(params, bias=jnp.zeros(5))}, x)
    _assert_close(y, ref, impl)


@pytest.mark.skipif(torch is None, reason="torch is not installed; the "
                    "PyTorch equivalence check needs it")
@pytest.mark.parametrize("kind", ["up", "down"])
@pytest.mark.parametrize("ks,shape", [(4, (2, 5, 6, 3, 4)),
                                      (4, (3, 8, 8, 6, 12)),
                                      (3, (2, 5, 6, 3, 12))])
def test_matches_pytorch(kind, shape, ks):
  x, params = _random_case(shape, seed=3, kernel_size=ks)
  _, _, _, cin, cout = shape
  k = np.asarray(params["kernel"])
  xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  if kind == "up":
    # 4x4: exactly 2x with padding 1; 3x3 needs output_padding=1 for that.
    tm = torch.nn.ConvTranspose2d(cin, cout, ks, stride=2, padding=1,
                                  output_padding=4 - ks)
    # PyTorch stores (Cin, Cout, kh, kw) and applies the kernel flipped.
    tw = k[::-1, ::-1].transpose(2, 3, 0, 1)
  else:
    tm = torch.nn.Conv2d(cin, cout, ks, stride=2, padding=1)
    tw = k.transpose(3, 2, 0, 1)
  with torch.no_grad():
    tm.weight.copy_(torch.from_numpy(np.ascontiguousarray(tw)))
    tm.bias.copy_(torch.from_numpy(np.array(params["bias"])))
    expected = tm(xt).numpy().transpose(0, 2, 3, 1)
  for impl in _impls(kind, ks):
    m = _module(kind, cout, impl, kernel_size=ks)
    y = m.apply({"params": params}, x)
    _assert_close(y, expected, f"{impl} vs torch")


@pytest.mark.parametrize("kind", ["up", "down"])
def test_bfloat16_compute(kind):
  x, params = _random_case((2, 6, 6, 4, 12))
  ref = _reference(kind, 12).apply({"params": params}, x)
  for impl in _impls(kind):
    m = _module(kind, 12, impl, dtype=jnp.bfloat16)
    y = jax.jit(m.apply)({"params": params}, x)
    assert y.dtype == jnp.bfloat16
    scale = float(jnp.abs(ref).max())
    assert float(jnp.abs(y.astype(jnp.float32) - ref).max()) < 3e-2 * scale
    # Params stay float32 under a bf16 compute dtype.
    p = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"]
    assert p["kernel"].dtype == jnp.float32


@pytest.mark.parametrize("kind", ["up", "down"])
def test_no_recompilation(kind):
  compiles = []

  def listener(event, duration, **kwargs):
    del duration, kwargs
    if event == "/jax/core/compile/backend_compile_duration":
      compiles.append(event)

  x, params = _random_case((2, 8, 8, 4, 12))
  for impl in _impls(kind):
    m = _module(kind, 12, impl)
    step = jax.jit(jax.value_and_grad(
        lambda p, x, m=m: jnp.sum(m.apply({"params": p}, x))))
    step(params, x)  # Compile once.
    # New values, same shapes/dtypes; built before listening so that the
    # eager ops creating them are not counted.
    inputs = [(jax.tree.map(lambda a, i=i: a + i, params), x * (i + 2))
              for i in range(3)]
    jax.block_until_ready(inputs)
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
      for p, xi in inputs:
        jax.block_until_ready(step(p, xi))
    finally:
      jax.monitoring.unregister_event_duration_listener(listener)
    assert step._cache_size() == 1, impl
  assert not compiles, f"recompiled {len(compiles)} times"


def test_impl_resolution():
  assert layers.resolve_impl("up", None) == layers.default_impl("up")
  assert layers.resolve_impl("down", "auto") == layers.default_impl("down")
  assert layers.default_impl("up", "gpu") == "transpose"
  assert layers.default_impl("down", "tpu") == "conv"
  assert layers.default_impl("up", "cpu") == "mixed"
  assert layers.default_impl("down", "cpu") == "mixed"
  for kind in ("up", "down"):
    assert layers.default_impl(kind) in _impls(kind)
    for impl in _impls(kind):
      assert layers.resolve_impl(kind, impl) == impl


@pytest.mark.parametrize("kind,bad", [("up", "conv"), ("down", "subpixel"),
                                      ("up", "nope")])
def test_unknown_impl_raises(kind, bad):
  with pytest.raises(ValueError, match="valid") as err:
    _module(kind, 4, bad).init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 2)))
  for name in _impls(kind):
    assert name in str(err.value)
  with pytest.raises(ValueError):
    layers.default_impl("sideways")


@pytest.mark.parametrize("kind", ["up", "down"])
def test_mixed_second_order_reverse_mode(kind):
  # Gradient penalties differentiate a gradient; the custom VJP of 'mixed'
  # is itself differentiable and must agree with the reference op.
  x, params = _random_case((2, 8, 8, 12, 10))
  fn = layers.upconv if kind == "up" else layers.downconv
  ref = "transpose" if kind == "up" else "conv"

  def penalty(impl):
    inner = lambda x: jnp.sum(jnp.tanh(fn(x, params["kernel"], impl)))
    return jax.grad(lambda x: jnp.sum(jax.grad(inner)(x) ** 2))(x)

  _assert_close(penalty("mixed"), penalty(ref), "mixed second order")


# ---------------------------------------------------------------------------
# 3x3 kernels (CycleGAN's ResNet generator layers).
# ---------------------------------------------------------------------------

# (batch, H, W, Cin, Cout): odd and even sizes, thin (Cout <= 8) and wide.
# Of the up lowerings only 'subpixel' depends on the width (thin: one merged
# conv), so only it runs on the wide shape.
SHAPES3 = [(2, 5, 6, 3, 4), (1, 6, 7, 6, 12)]
_WIDE_UP3 = ("reference", "subpixel")
_REF3 = {"up": resample.upconv3_transpose, "down": resample.downconv3_conv}
_LARGE = "mixed, large-layer forms"

# The 3x3 tests compile every lowering into one small program per case;
# without LLVM's optimizations that takes a third of the time. XLA's HLO
# passes, which decide how each lowering runs, are unaffected.
_QUICK_COMPILE = {"xla_backend_optimization_level": 0}


def _force_large_forms3(monkeypatch):
  monkeypatch.setattr(resample_mixed, "_MATMUL3_MAX_VALUES", 0)
  monkeypatch.setattr(resample_mixed, "_S2D3_MIN_PIXELS", 1)


def test_3x3_mixed_branches_exercised(monkeypatch):
  # The 3x3 test shapes take mixed's small-layer forms, _LARGE the others.
  # Both ops choose with `_upconv3_forms` (down for its transposed problem,
  # on the smaller output gradient).
  shapes = SHAPES3 + [(2, 5, 6, 4, 12), (2, 5, 6, 6, 10)]
  forms = lambda: {resample_mixed._upconv3_forms(s[:4], s[4]) for s in shapes}
  assert forms() == {(resample.upconv_matmul,
                      resample_mixed._upconv_kernel_grad_taps)}
  _force_large_forms3(monkeypatch)
  assert forms() == {(resample.subpixel_phases,
                      resample_mixed._upconv3_kernel_grad_s2d)}


def _lowerings3(kind, monkeypatch):
  """{name: fn} for every 3x3 lowering of `kind`, the reference first.

  The impl that is the reference op itself ('transpose' / 'conv') is left
  out: comparing it with the reference could not fail. _LARGE is 'mixed'
  with its size thresholds forced so that tiny shapes take the branches
  meant for large layers (the thresholds are read at trace time, so it
  must be traced inside `monkeypatch`'s context, as here).
  """
  impls = {impl: layers.resolve_fn(kind, impl, kernel_size=3)
           for impl in _impls(kind, 3)}
  same = [impl for impl, fn in impls.items() if fn is _REF3[kind]]
  assert same == [{"up": "transpose", "down": "conv"}[kind]]
  fns = {"reference": _REF3[kind]}
  fns.update((impl, fn) for impl, fn in impls.items() if impl not in same)

  def mixed_large(x, kernel):
    with monkeypatch.context() as m:
      _force_large_forms3(m)
      return fns["mixed"](x, kernel)

  fns[_LARGE] = mixed_large
  return fns


def _values_and_grads3(jobs):
  """Runs {key: (fn, (x, kernel, proj))} as one compiled program.

  Returns:
    {key: (y, d/dx, d/dkernel of sum(y * proj))}, y = fn(x, kernel).
  """
  fns = {key: fn for key, (fn, _) in jobs.items()}

  def run_all(cases):
    return {key: (fns[key](x, k),) + jax.vjp(fns[key], x, k)[1](proj)
            for key, (x, k, proj) in cases.items()}

  cases = {key: case for key, (_, case) in jobs.items()}
  return jax.jit(run_all, compiler_options=_QUICK_COMPILE)(cases)


def _case3(kind, shape, dtype=jnp.float32):
  """(x, kernel, proj), proj a random cotangent so every element matters."""
  x, params = _random_case(shape, kernel_size=3)
  y = jax.eval_shape(_REF3[kind], x, params["kernel"])
  proj = np.random.default_rng(1).normal(size=y.shape)
  return tuple(jnp.asarray(a, dtype) for a in (x, params["kernel"], proj))


@pytest.mark.parametrize("kind", ["up", "down"])
def test_3x3_lowerings_match_reference(kind, monkeypatch):
  fns = _lowerings3(kind, monkeypatch)
  assert len(fns) == len(_impls(kind, 3)) + 1
  wide = SHAPES3[1]
  jobs = {(name, shape): (fn, _case3(kind, shape))
          for shape in SHAPES3 for name, fn in fns.items()
          if kind == "down" or shape != wide or name in _WIDE_UP3}
  results = _values_and_grads3(jobs)
  for name, shape in jobs:
    if name == "reference":
      continue
    expected = results[("reference", shape)]
    n, h, w, _, cout = shape
    assert expected[0].shape == (
        (n, 2 * h, 2 * w, cout) if kind == "up" else
        (n, (h - 1) // 2 + 1, (w - 1) // 2 + 1, cout))
    for a, e, what in zip(results[(name, shape)], expected,
                          ("output", "d/dx", "d/dkernel")):
      _assert_close(a, e, f"{name} {shape} {what}")


@pytest.mark.parametrize("kind", ["up", "down"])
def test_3x3_bfloat16(kind, monkeypatch):
  shape = (2, 5, 6, 4, 12)
  fns = _lowerings3(kind, monkeypatch)
  case = _case3(kind, shape, jnp.bfloat16)
  jobs = {name: (fn, case) for name, fn in fns.items()}
  jobs["reference"] = (fns["reference"], _case3(kind, shape))  # float32.
  results = _values_and_grads3(jobs)
  expected = results.pop("reference")
  for name, actual in results.items():
    for a, e, what in zip(actual, expected, ("output", "d/dx", "d/dkernel")):
      assert a.dtype == jnp.bfloat16, f"{name} {what}"
      scale = float(jnp.abs(e).max())
      err = float(jnp.abs(a.astype(jnp.float32) - e).max())
      assert err < 3e-2 * scale, f"{name} {what}: {err:.2e} vs {scale:.2e}"


@pytest.mark.parametrize("kind", ["up", "down"])
def test_3x3_mixed_second_order_reverse_mode(kind, monkeypatch):
  # A gradient penalty (WGAN-GP) differentiates the input gradient, w.r.t.
  # the parameters too; through both of mixed's branch sets.
  fns = _lowerings3(kind, monkeypatch)
  fns = {name: fns[name] for name in ("reference", "mixed", _LARGE)}
  x, kernel, _ = _case3(kind, (2, 5, 6, 6, 10))

  def penalty(fn):
    inner = lambda x, k: jnp.sum(jnp.tanh(fn(x, k)))
    outer = lambda x, k: jnp.sum(jax.grad(inner)(x, k) ** 2)
    return jax.grad(outer, (0, 1))

  results = jax.jit(lambda x, k: {n: penalty(f)(x, k) for n, f in fns.items()},
                    compiler_options=_QUICK_COMPILE)(x, kernel)
  expected = results.pop("reference")
  for name, actual in results.items():
    for a, e, what in zip(actual, expected, ("d/dx", "d/dkernel")):
      _assert_close(a, e, f"{name} second order {what}")


def test_3x3_impl_resolution():
  assert tuple(layers.UP3_FNS) == layers.UP_IMPLS
  assert tuple(layers.DOWN3_FNS) == layers.DOWN_IMPLS
  for kind, ref in (("up", "transpose"), ("down", "conv")):
    table = layers.UP3_FNS if kind == "up" else layers.DOWN3_FNS
    assert layers.resolve_fn(kind, None, 3, backend="cpu") is table["mixed"]
    for backend in ("gpu", "tpu", "unknown"):
      assert layers.resolve_fn(kind, "auto", 3, backend=backend) is table[ref]
    with pytest.raises(ValueError, match="valid"):
      layers.resolve_fn(kind, "nope", 3)
