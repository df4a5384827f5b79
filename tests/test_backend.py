"""Per-backend compiler options (jaxgen/backend.py)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import backend


def _f(x, w):
  y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.mean(jnp.tanh(y), axis=(0, 1, 2))


_GRAD = jax.grad(lambda x, w: jnp.sum(_f(x, w)), argnums=(0, 1))


def _inputs():
  rng = np.random.default_rng(0)
  return (jnp.asarray(rng.normal(size=(8, 32, 32, 16)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, 16, 32)), jnp.float32))


def _convs_outside_ynnpack(hlo):
  """(convolutions in the entry computation, YNNPACK fusions) of an
  optimised HLO module: XLA:CPU wraps what it hands to YNNPACK in fusions
  of kind __ynn_fusion, and runs entry-level convolutions itself (Eigen)."""
  entry = hlo[hlo.index("\nENTRY"):]
  return (len(re.findall(r"\bconvolution\(", entry)),
          hlo.count('"__ynn_fusion"'))


def test_only_the_environment_switch_and_backend_change_the_options(
    monkeypatch):
  monkeypatch.delenv("JAXGEN_XLA_OPTIONS", raising=False)
  cpu = backend.compiler_options("cpu")
  assert cpu and all(isinstance(v, str) for v in cpu.values())
  assert backend.compiler_options("gpu") is None
  assert backend.compiler_options("tpu") is None
  for off in ("0", "false", "False"):
    monkeypatch.setenv("JAXGEN_XLA_OPTIONS", off)
    assert backend.compiler_options("cpu") is None
  monkeypatch.setenv("JAXGEN_XLA_OPTIONS", "1")
  assert backend.compiler_options("cpu") == cpu
  # The default backend's options are the ones jit uses.
  assert backend.compiler_options() == backend.compiler_options(
      jax.default_backend())


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="the options only change XLA:CPU programs")
def test_cpu_convolutions_leave_ynnpack_only_with_the_options(monkeypatch):
  """What the options are for: XLA:CPU hands a convolution's forward and
  gradients to YNNPACK by default; jaxgen's jit keeps them on XLA's own
  convolutions. JAXGEN_XLA_OPTIONS=0 restores the default program."""
  # XLA rejects unknown option names or values at compile time, so this
  # also checks that the installed jaxlib still accepts jaxgen's options.
  monkeypatch.delenv("JAXGEN_XLA_OPTIONS", raising=False)
  x, w = _inputs()
  ours = backend.jit(_GRAD).lower(x, w).compile().as_text()
  plain = jax.jit(_GRAD).lower(x, w).compile().as_text()
  # Forward, input-gradient and kernel-gradient convolutions.
  assert _convs_outside_ynnpack(ours)[0] == 3, ours
  assert _convs_outside_ynnpack(plain)[0] == 0 < _convs_outside_ynnpack(
      plain)[1], plain
  monkeypatch.setenv("JAXGEN_XLA_OPTIONS", "0")
  off = backend.jit(_GRAD).lower(x, w).compile().as_text()
  assert _convs_outside_ynnpack(off) == _convs_outside_ynnpack(plain)
  # The options change how, not what, XLA computes.
  monkeypatch.delenv("JAXGEN_XLA_OPTIONS")
  for a, b in zip(backend.jit(_GRAD)(x, w), jax.jit(_GRAD)(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
