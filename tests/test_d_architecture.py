"""Discriminator/generator options of the GAN families: spectral norm
(gan.d_spectral_norm), multi-scale PatchGANs (gan.d_scales) and label
injection by projection (model.label_injection). Each family's training
step with them on: tests/test_gan_options.py."""

import functools
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import losses
from jaxgen.models import dcgan
from jaxgen.models import normalization
from jaxgen.models import patchgan
from jaxgen.models import siamese
from jaxgen.models import unet
from jaxgen.tasks import cgan
from jaxgen.tasks import cyclegan
from jaxgen.tasks import gan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _key(seed):
  # rbg: XLA:CPU compiles threefry bit generation slowly.
  return jax.random.key(seed, impl="rbg")


def _config(spec, **updates):
  """configs/<spec> with {"group.field": value} overrides."""
  config = configlib.load_config_file(os.path.join(ROOT, "configs", spec))
  config.update_from_flattened_dict(updates)
  return config


def _flat(tree):
  return {"/".join(map(str, k)): np.asarray(v) for k, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(tree)).items()}


def _sn_vectors(batch_stats):
  return {k: v for k, v in _flat(batch_stats).items() if k.endswith("/u")}


# Spectral normalisation.


def test_power_iterations_give_unit_largest_singular_value():
  disc = dcgan.Discriminator(width=4, max_width=8, spectral_norm=True)
  x = jax.random.normal(_key(0), (4, 16, 16, 1))
  variables = jax.jit(disc.init)(_key(1), x)
  # Weights far from unit norm (flax's init stores them normalised once).
  variables = {**variables, "params": jax.tree.map(lambda p: 3.0 * p,
                                                   variables["params"])}

  @jax.jit
  def iterate(stats):
    def body(_, stats):
      _, upd = disc.apply({**variables, "batch_stats": stats}, x,
                          mutable=["batch_stats"])
      return upd["batch_stats"]
    return jax.lax.fori_loop(0, 40, body, stats)

  stats = iterate(variables["batch_stats"])
  # Two DownConvs (16 -> 8 -> 4) and the dense head, next to BatchNorm's
  # statistics (kept: norms are configured separately).
  assert len(_sn_vectors(stats)) == 3
  assert any(k.endswith("/mean") for k in _flat(stats))
  raw = _flat(variables["params"])
  used = _flat(normalization.normalized_params(variables["params"], stats))
  for name in ("DownConv_0/kernel", "DownConv_1/kernel", "Dense_0/kernel"):
    w = used[name]
    top = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(top, 1.0, rtol=1e-3, err_msg=name)
    raw_top = np.linalg.svd(raw[name].reshape(-1, w.shape[-1]),
                            compute_uv=False)[0]
    assert raw_top > 2.5, name
  # Biases are not normalised.
  np.testing.assert_array_equal(used["DownConv_0/bias"],
                                raw["DownConv_0/bias"])


@pytest.mark.parametrize("impl", ["conv", "space_to_depth", "matmul", "taps",
                                  "mixed"])
def test_every_downsampling_lowering_uses_the_normalised_kernel(impl):
  kw = dict(width=4, max_width=8, n_layers=1, norm="none",
            downsample_impl=impl)
  sn = patchgan.PatchGAN(spectral_norm=True, **kw)
  plain = patchgan.PatchGAN(**kw)
  x = jax.random.normal(_key(0), (2, 12, 12, 3))
  variables = jax.jit(sn.init)(_key(1), None, x)

  @jax.jit
  def run(variables):
    y, upd = sn.apply(variables, None, x, mutable=["batch_stats"])
    used = normalization.normalized_params(variables["params"],
                                           upd["batch_stats"])
    return y, plain.apply({"params": used}, None, x)

  y, want = run(variables)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)


def test_params_are_unchanged_and_state_covers_encoder_and_heads():
  x = jnp.zeros((2, 16, 16, 3))
  shapes = {}
  for sn in (False, True):
    disc = siamese.SiameseDiscriminator(width=4, max_width=8, sim_hidden=4,
                                        spectral_norm=sn)
    shapes[sn] = jax.eval_shape(disc.init, _key(0), x)
  assert (jax.tree.structure(shapes[True]["params"]) ==
          jax.tree.structure(shapes[False]["params"]))
  names = sorted(_sn_vectors(shapes[True]["batch_stats"]))
  assert names == [
      "adv_head_sn/adv_head/kernel/u",
      "encoder/SpectralNorm_0/DownConv_0/kernel/u",
      "encoder/SpectralNorm_1/DownConv_1/kernel/u",
      "sim_head/SpectralNorm_0/Dense_0/kernel/u",
      "sim_head/SpectralNorm_1/Dense_1/kernel/u"]


# Multi-scale PatchGAN.


def test_downsample_averages_only_pixels_inside_the_image():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  # Corner window {0, 1, 4, 5}, edges of 6 pixels, the inner one of 9.
  np.testing.assert_allclose(patchgan.downsample(x)[0, ..., 0],
                             [[2.5, 4.0], [8.5, 10.0]])
  assert patchgan.downsample(jnp.ones((1, 5, 7, 2))).shape == (1, 3, 4, 2)
  np.testing.assert_allclose(patchgan.downsample(jnp.ones((1, 5, 7, 2))), 1.0)
  assert patchgan.scale_sizes(16, 3) == [16, 8, 4]


def test_multiscale_outputs_are_per_scale_patchgans_on_pooled_inputs():
  kw = dict(width=4, max_width=8, n_layers=1, norm="instance")
  disc = patchgan.discriminator(3, **kw)
  assert isinstance(disc, patchgan.MultiScalePatchGAN)
  assert type(patchgan.discriminator(1, **kw)) is patchgan.PatchGAN
  cond = jax.random.normal(_key(0), (2, 32, 32, 1))
  image = jax.random.normal(_key(1), (2, 32, 32, 3))
  variables = jax.jit(disc.init)(_key(2), cond, image)
  assert sorted(variables["params"]) == ["scale0", "scale1", "scale2"]
  single = patchgan.PatchGAN(**kw)

  @jax.jit
  def run(variables):
    outs = disc.apply(variables, cond, image)
    want, c, x = [], cond, image
    for k in range(3):
      want.append(single.apply({"params": variables["params"][f"scale{k}"]},
                               c, x))
      c, x = patchgan.downsample(c), patchgan.downsample(x)
    return outs, want

  outs, want = run(variables)
  assert isinstance(outs, list) and len(outs) == 3
  for k, size in enumerate(patchgan.scale_sizes(32, 3)):
    side = patchgan.output_size(size, 1)
    assert outs[k].shape == (2, side, side)
    np.testing.assert_allclose(outs[k], want[k], rtol=1e-5, atol=1e-6)
  # The losses and the D(x) metric average over the scales.
  fakes = [-o for o in outs]
  np.testing.assert_allclose(
      losses.halved_d_loss(outs, fakes, "lsgan"),
      np.mean([losses.halved_d_loss(r, f, "lsgan")
               for r, f in zip(outs, fakes)]), rtol=1e-6)
  np.testing.assert_allclose(
      losses.mean_sigmoid(outs),
      np.mean([losses.mean_sigmoid(o) for o in outs]), rtol=1e-6)


def test_bad_scales_are_one_clear_error():
  with pytest.raises(ValueError, match=r"gan.d_scales must be an integer"):
    patchgan.check_scales(16, 1, 0)
  # 32 -> 16 -> 8: a 2-layer PatchGAN needs more than 8 px.
  with pytest.raises(ValueError, match=r"gan.d_scales=3 .* at most 2 "):
    patchgan.check_scales(32, 2, 3)
  patchgan.check_scales(32, 2, 2)
  with pytest.raises(ValueError, match=r"gan.d_scales=5"):
    cyclegan.CycleGANTask(_config("cyclegan.py:tiny", **{"gan.d_scales": 5}))
  with pytest.raises(ValueError, match=r"gan.d_scales=2 needs a multi-scale"):
    gan.GANTask(_config("gan.py:tiny", **{"gan.d_scales": 2}))


# Label injection by projection.


def test_projection_adds_the_label_embedding_inner_product():
  disc = patchgan.PatchGAN(width=4, max_width=8, n_layers=1, norm="none",
                           num_classes=3, label_injection="projection")
  cond = jax.random.normal(_key(0), (2, 12, 12, 1))
  image = jax.random.normal(_key(1), (2, 12, 12, 3))
  label = jnp.asarray([0, 1])
  params = jax.jit(disc.init)(_key(2), cond, image, label)["params"]
  # No label channels at the input: the first kernel reads 1 + 3 channels.
  assert "label_channels" not in params
  assert params["DownConv_0"]["kernel"].shape[2] == 4
  table = np.arange(24, dtype=np.float32).reshape(3, 8) / 10 - 1
  params = {**params, "projection": {"embedding": jnp.asarray(table)}}

  @jax.jit
  def run(label):
    return disc.apply({"params": params}, cond, image, label,
                      mutable=["intermediates"])

  y1, inter1 = run(jnp.asarray([0, 1]))
  y2, inter2 = run(jnp.asarray([2, 0]))
  h = np.asarray(inter1["intermediates"]["projection_features"][0])
  np.testing.assert_array_equal(
      h, inter2["intermediates"]["projection_features"][0])
  assert h.shape[:3] == y1.shape
  want = np.einsum("bhwc,bc->bhw", h, table[[0, 1]] - table[[2, 0]])
  np.testing.assert_allclose(y1 - y2, want, rtol=1e-5, atol=1e-5)
  assert np.abs(want).max() > 0.1


def test_class_film_known_values_and_identity_at_init():
  film = normalization.ClassFiLM(num_classes=2)
  x = jnp.asarray([[[[1.0, 2.0]]], [[[3.0, -1.0]]]])
  label = jnp.asarray([1, 0])
  params = film.init(_key(0), x, label)["params"]
  np.testing.assert_array_equal(film.apply({"params": params}, x, label), x)
  params = {"scale": {"embedding": jnp.asarray([[1.0, 2.0], [3.0, 4.0]])},
            "shift": {"embedding": jnp.asarray([[0.5, 0.0], [0.0, -1.0]])}}
  np.testing.assert_allclose(
      film.apply({"params": params}, x, label)[:, 0, 0],
      [[1 * 3.0, 2 * 4.0 - 1], [3 * 1.0 + 0.5, -1 * 2.0]])


def test_projection_generator_equals_concat_one_at_init():
  kw = dict(out_channels=3, width=4, max_width=8, num_classes=2, label_dim=2)
  proj = unet.UNet(label_injection="projection", **kw)
  concat = unet.UNet(**kw)
  x = jax.random.normal(_key(0), (2, 8, 8, 1))
  label = jnp.asarray([1, 0])
  variables = jax.jit(functools.partial(proj.init, train=False))(
      _key(1), x, label)
  films = sorted(k for k in variables["params"] if k.startswith("film"))
  # 8 px: 3 levels, a norm after the two inner decoder blocks.
  assert films == ["film1", "film2"]
  plain = {**variables, "params": {k: v for k, v in variables["params"].items()
                                   if not k.startswith("film")}}

  @jax.jit
  def run(variables, plain):
    return (proj.apply(variables, x, label, train=False),
            concat.apply(plain, x, label, train=False))

  got, want = run(variables, plain)
  np.testing.assert_array_equal(got, want)
  enc = unet.EncoderGenerator(label_injection="projection", code_dim=4, **kw)
  shapes = jax.eval_shape(functools.partial(enc.init, train=False), _key(0),
                          jnp.zeros((2, 16, 16, 1)), label)
  assert {"film_project", "film1"} <= set(shapes["params"])


def test_bad_label_injection_is_one_clear_error():
  with pytest.raises(ValueError, match=r"model.label_injection 'film'.*"
                     r"concat, projection"):
    cgan.CGANTask(_config("cgan.py:labels,tiny",
                          **{"model.label_injection": "film"}))
  with pytest.raises(ValueError, match=r"needs labels"):
    cgan.CGANTask(_config("cgan.py:tiny",
                          **{"model.label_injection": "projection"}))
