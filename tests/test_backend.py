"""Per-backend compiler options (jaxgen/backend.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import backend


def test_options_per_backend(monkeypatch):
  monkeypatch.delenv("JAXGEN_XLA_OPTIONS", raising=False)
  assert backend.compiler_options("cpu") == {
      "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}
  assert backend.compiler_options("gpu") is None
  monkeypatch.setenv("JAXGEN_XLA_OPTIONS", "0")
  assert backend.compiler_options("cpu") is None


def test_jit_compiles_with_the_options_and_matches_plain_jit():
  # XLA rejects unknown option names or values at compile time, so this
  # also checks that the installed jaxlib still accepts jaxgen's options.
  def f(x, w):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.mean(y, axis=(0, 1, 2))

  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)),
                  jnp.float32)
  w = jnp.ones((3, 3, 3, 4), jnp.float32)
  grad = lambda fn: fn(jax.grad(lambda x, w: jnp.sum(f(x, w)), 1))(x, w)
  np.testing.assert_allclose(grad(backend.jit), grad(jax.jit), rtol=1e-5)
