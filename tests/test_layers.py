"""Tests for jaxgen.models.layers: every impl computes the reference math.

The reference for `UpConv` is flax `nn.ConvTranspose((4, 4), strides=2,
padding='SAME')`, for `DownConv` flax `nn.Conv((4, 4), strides=2,
padding=((1, 1), (1, 1)))`. Outputs and gradients w.r.t. input, kernel and
bias must agree to float32 round-off, and parameters must be interchangeable.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import layers
from jaxgen.models import resample

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


def _impls(kind):
  return layers.UP_IMPLS if kind == "up" else layers.DOWN_IMPLS


def _random_case(shape, seed=0):
  n, h, w, cin, cout = shape
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, h, w, cin)), jnp.float32)
  params = {
      "kernel": jnp.asarray(rng.normal(size=(4, 4, cin, cout)), jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(cout,)), jnp.float32),
  }
  return x, params


def _value_and_grads(module, params, x):
  """Output and grads of a random projection, so every element matters."""
  y = module.apply({"params": params}, x)
  proj = jax.random.normal(jax.random.PRNGKey(1), y.shape, y.dtype)

  def loss(p, x):
    return jnp.sum(module.apply({"params": p}, x) * proj)

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  return y, grads


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
  assert min(couts) <= resample._MERGED_MAX_FEATURES < max(couts)
  cins = {s[3] for s in SHAPES}
  assert min(cins) <= resample._S2D_MAX_INPUTS < max(cins)
  pixels = lambda s: s[0] * s[1] * s[2]
  big = [s for s in SHAPES if pixels(s) >= resample._S2D_MIN_PIXELS and
         s[3] > resample._S2D_MAX_INPUTS]
  small = [s for s in SHAPES if pixels(s) < resample._S2D_MIN_PIXELS and
           s[3] > resample._S2D_MAX_INPUTS]
  assert big and small
  assert any(4 < s[1] * s[2] <= 16 and s[3] > resample._S2D_MAX_INPUTS
             for s in SHAPES)
  assert any(s[1] * s[2] <= 4 and s[3] > resample._S2D_MAX_INPUTS
             for s in SHAPES)
  # ... and upconv_mixed's 1x1 branch.
  assert any(s[1] * s[2] == 1 and s[4] > resample._MERGED_MAX_FEATURES
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
    assert set(m.init(jax.random.PRNGKey(0), x)["params"]) == {"kernel"}
    y = m.apply({"params": params}, x)
    ref = _reference(kind, 5).apply(
        {"params": dict(params, bias=jnp.zeros(5))}, x)
    _assert_close(y, ref, impl)


@pytest.mark.skipif(torch is None, reason="torch is not installed; the "
                    "PyTorch equivalence check needs it")
@pytest.mark.parametrize("kind", ["up", "down"])
@pytest.mark.parametrize("shape", [(2, 5, 6, 3, 4), (3, 8, 8, 6, 12)])
def test_matches_pytorch(kind, shape):
  x, params = _random_case(shape, seed=3)
  _, _, _, cin, cout = shape
  k = np.asarray(params["kernel"])
  xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  if kind == "up":
    tm = torch.nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    # PyTorch stores (Cin, Cout, kh, kw) and applies the kernel flipped.
    tw = k[::-1, ::-1].transpose(2, 3, 0, 1)
  else:
    tm = torch.nn.Conv2d(cin, cout, 4, stride=2, padding=1)
    tw = k.transpose(3, 2, 0, 1)
  with torch.no_grad():
    tm.weight.copy_(torch.from_numpy(np.ascontiguousarray(tw)))
    tm.bias.copy_(torch.from_numpy(np.array(params["bias"])))
    expected = tm(xt).numpy().transpose(0, 2, 3, 1)
  for impl in _impls(kind):
    y = _module(kind, cout, impl).apply({"params": params}, x)
    _assert_close(y, expected, f"{impl} vs torch")


@pytest.mark.parametrize("kind", ["up", "down"])
def test_bfloat16_compute(kind):
  x, params = _random_case((2, 6, 6, 4, 12))
  ref = _reference(kind, 12).apply({"params": params}, x)
  for impl in _impls(kind):
    m = _module(kind, 12, impl, dtype=jnp.bfloat16)
    y = m.apply({"params": params}, x)
    assert y.dtype == jnp.bfloat16
    scale = float(jnp.abs(ref).max())
    assert float(jnp.abs(y.astype(jnp.float32) - ref).max()) < 3e-2 * scale
    # Params stay float32 under a bf16 compute dtype.
    p = m.init(jax.random.PRNGKey(0), x)["params"]
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
