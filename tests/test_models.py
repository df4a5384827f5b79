"""Shapes and dtypes of the VAE and DCGAN modules."""

import jax
import jax.numpy as jnp
import pytest

from jaxgen.models import dcgan
from jaxgen.models import vae


@pytest.mark.parametrize("res,channels", [(8, 1), (16, 3), (64, 1)])
def test_vae_shapes(res, channels):
  model = vae.VAE(res=res, channels=channels, latent_dim=5, width=4,
                  max_width=8)
  x = jnp.zeros((2, res, res, channels))
  rngs = {"params": jax.random.key(0), "latent": jax.random.key(1)}
  variables = model.init(rngs, x)
  logits, mean, logvar = model.apply(variables, x,
                                     rngs={"latent": jax.random.key(2)})
  assert logits.shape == x.shape and logits.dtype == jnp.float32
  assert mean.shape == logvar.shape == (2, 5)
  z = model.apply(variables, jnp.ones((3, 5)), method=vae.VAE.decode)
  assert z.shape == (3, res, res, channels)
  # The posterior mean path is deterministic; the sampled one is not.
  a = model.apply(variables, x + 0.5, sample=False)[0]
  b = model.apply(variables, x + 0.5, sample=False)[0]
  assert jnp.array_equal(a, b)


@pytest.mark.parametrize("res,channels", [(8, 1), (32, 3), (64, 1)])
def test_dcgan_shapes(res, channels):
  gen = dcgan.Generator(res=res, channels=channels, width=4, max_width=16)
  disc = dcgan.Discriminator(width=4, max_width=16)
  z = jnp.ones((3, 7))
  gv = gen.init(jax.random.key(0), z)
  img = gen.apply(gv, z, train=False)
  assert img.shape == (3, res, res, channels) and img.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(img))) <= 1.0  # tanh output.
  dv = disc.init(jax.random.key(1), img)
  logits = disc.apply(dv, img, train=False)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert "batch_stats" in gv
  # D has no normalisation on its first block: with one block, no stats.
  assert ("batch_stats" in dv) == (res > 8)


def test_dcgan_bfloat16_compute_keeps_float32_params():
  gen = dcgan.Generator(res=16, channels=1, width=4, max_width=8,
                        dtype=jnp.bfloat16)
  v = gen.init(jax.random.key(0), jnp.ones((2, 3)))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  assert gen.apply(v, jnp.ones((2, 3)), train=False).dtype == jnp.float32


def test_bad_resolution_is_clear():
  with pytest.raises(ValueError, match="power of two >= 8, got 48"):
    vae.num_levels(48)
