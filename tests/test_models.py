"""Shapes and dtypes of the VAE and DCGAN modules."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.models import dcgan
from jaxgen.models import vae
from tests import reference


def _key(seed):
  # XLA:CPU compiles threefry initialisers slowly; rbg keeps this file fast.
  return jax.random.key(seed, impl="rbg")


@pytest.mark.parametrize("res,channels,latent_res",
                         [(8, 1, 0), (16, 3, 0), (64, 1, 0), (16, 3, 4),
                          (64, 1, 8)])
def test_vae_shapes(res, channels, latent_res):
  model = vae.VAE(res=res, channels=channels, latent_dim=5, width=4,
                  max_width=8, latent_res=latent_res)
  x = jnp.zeros((2, res, res, channels))
  rngs = {"params": _key(0), "latent": _key(1)}
  variables = jax.jit(model.init)(rngs, x)
  apply = jax.jit(model.apply, static_argnames="sample")
  logits, mean, logvar = apply(variables, x, rngs={"latent": _key(2)})
  assert logits.shape == x.shape and logits.dtype == jnp.float32
  shape = (latent_res, latent_res, 5) if latent_res else (5,)
  assert shape == vae.latent_shape(res, 5, latent_res)
  assert mean.shape == logvar.shape == (2,) + shape
  z = jax.eval_shape(functools.partial(model.apply, method=vae.VAE.decode),
                     variables, jnp.ones((3,) + shape))
  assert z.shape == (3, res, res, channels)
  # The posterior mean path ignores the latent rng (it decodes the mean);
  # the sampled one does not.
  a, mean_a, _ = apply(variables, x + 0.5, sample=False,
                       rngs={"latent": _key(3)})
  b = apply(variables, x + 0.5, sample=False, rngs={"latent": _key(4)})[0]
  assert jnp.array_equal(a, b)
  decoded = model.apply(variables, mean_a, method=vae.VAE.decode)
  np.testing.assert_allclose(a, decoded, rtol=1e-5, atol=1e-5)
  c = apply(variables, x + 0.5, rngs={"latent": _key(3)})[0]
  d = apply(variables, x + 0.5, rngs={"latent": _key(4)})[0]
  assert not jnp.array_equal(c, d)


@pytest.mark.parametrize("latent_res", [2, 6, 16, 32])
def test_vae_latent_res_errors(latent_res):
  with pytest.raises(ValueError, match="model.latent_res must be 0 or a "
                     r"power of two in \[4, 8\] for 16 px images"):
    vae.latent_shape(16, 5, latent_res)


@pytest.mark.parametrize("res,channels", [(8, 1), (32, 3), (64, 1)])
def test_dcgan_shapes(res, channels):
  gen = dcgan.Generator(res=res, channels=channels, width=4, max_width=16)
  disc = dcgan.Discriminator(width=4, max_width=16)
  z = jnp.ones((3, 7))
  gv = jax.jit(gen.init)(_key(0), z)
  img = jax.jit(functools.partial(gen.apply, train=False))(gv, z)
  assert img.shape == (3, res, res, channels) and img.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(img))) <= 1.0  # tanh output.
  dv = jax.jit(disc.init)(_key(1), img)
  logits = jax.jit(functools.partial(disc.apply, train=False))(dv, img)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert "batch_stats" in gv
  # D has no normalisation on its first block: with one block, no stats.
  assert ("batch_stats" in dv) == (res > 8)


@pytest.mark.parametrize("norm", ["batch", "layer", "none"])
def test_dcgan_discriminator_norms(norm):
  """model.d_norm: with "layer" or "none" each example's logit in training
  mode depends on that example alone (what a per-example gradient penalty
  assumes); BatchNorm couples the batch. Biases only where no norm follows."""
  disc = dcgan.Discriminator(width=4, max_width=8, norm=norm)
  x = jax.random.normal(_key(0), (3, 16, 16, 1))
  v = jax.jit(disc.init)(_key(1), x)
  params = v["params"]
  assert ("bias" in params["DownConv_1"]) == (norm == "none")
  assert ("LayerNorm_0" in params) == (norm == "layer")
  assert ("batch_stats" in v) == (norm == "batch")
  run = jax.jit(lambda v, x: disc.apply(v, x, train=True,
                                        mutable=["batch_stats"])[0])
  other = x.at[1:].set(jax.random.normal(_key(2), (2, 16, 16, 1)))
  moved = abs(float(run(v, x)[0] - run(v, other)[0]))
  assert (moved > 1e-4) == (norm == "batch"), moved
  with pytest.raises(ValueError, match="model.d_norm"):
    dcgan.Discriminator(width=4, norm="group").init(_key(1), x)


def test_dcgan_bfloat16_compute_keeps_float32_params():
  z = jnp.ones((2, 3))
  gen = dcgan.Generator(res=16, channels=1, width=4, max_width=8,
                        dtype=jnp.bfloat16)
  v = jax.eval_shape(gen.init, _key(0), z)  # Shapes only: no compiling.
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
  apply = lambda m: functools.partial(m.apply, train=False)
  assert jax.eval_shape(apply(gen), v, z).dtype == jnp.float32
  # The matmul and every up-convolution run in bfloat16 on the float32
  # params; with the default dtype the same program is float32 throughout.
  names = ("conv_general_dilated", "dot_general")
  bf16 = reference.primitive_input_dtypes(apply(gen), v, z, names=names)
  f32 = reference.primitive_input_dtypes(apply(gen.clone(dtype=jnp.float32)),
                                         v, z, names=names)
  assert sum(f32["conv_general_dilated"].values()) == 2  # Two up-blocks.
  for name in names:
    assert set(bf16[name]) == {("bfloat16", "bfloat16")}, bf16
    assert set(f32[name]) == {("float32", "float32")}, f32
    assert sum(bf16[name].values()) == sum(f32[name].values())
  # The discriminator likewise.
  disc = dcgan.Discriminator(width=4, max_width=8, dtype=jnp.bfloat16)
  img = jnp.zeros((2, 16, 16, 1))
  dv = jax.eval_shape(disc.init, _key(1), img)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(dv["params"]))
  assert jax.eval_shape(apply(disc), dv, img).dtype == jnp.float32
  convs = reference.primitive_input_dtypes(apply(disc), dv, img)
  assert set(convs["conv_general_dilated"]) == {("bfloat16", "bfloat16")}


def test_bad_resolution_is_clear():
  with pytest.raises(ValueError, match="power of two >= 8, got 48"):
    vae.num_levels(48)
