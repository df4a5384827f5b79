"""The residual networks of model.arch="resnet" (jaxgen/models/resgan.py)
and the gan and siamese_gan families trained with them. The residual
generator's class-conditional BatchNorm is tested with DCGAN's, in
tests/test_conditional_gan.py."""

import functools
import os

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import train
from jaxgen.models import dcgan
from jaxgen.models import normalization
from jaxgen.models import resgan
from jaxgen.models import siamese
from jaxgen.tasks import gan
from jaxgen.tasks import siamese_gan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# rbg: XLA:CPU compiles threefry bit generation slowly.
_key = functools.partial(jax.random.key, impl="rbg")


def _config(spec, **updates):
  config = configlib.load_config_file(os.path.join(ROOT, "configs", spec))
  config.update_from_flattened_dict(updates)
  return config


def _flat(tree):
  return flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")


@pytest.mark.parametrize("res,channels", [(8, 1), (32, 3)])
def test_shapes_and_parameters(res, channels):
  gen = resgan.ResGenerator(res=res, channels=channels, width=4,
                            max_width=16)
  z = jax.random.normal(_key(0), (3, 7))
  gv = jax.jit(gen.init)(_key(1), z)
  img = jax.jit(functools.partial(gen.apply, train=False))(gv, z)
  assert img.shape == (3, res, res, channels) and img.dtype == jnp.float32
  assert float(jnp.std(img)) > 1e-3  # Not a constant image.
  levels = {8: 1, 32: 3}[res]
  # Per level 2 convs 3x3 and a 1x1 shortcut, then the output conv.
  kernels = [k for k in _flat(gv["params"]) if k.endswith("kernel")]
  assert len(kernels) == 1 + 3 * levels + 1  # Dense, blocks, output.
  disc = dcgan.Discriminator(width=4, max_width=16, arch="resnet")
  dv = jax.jit(disc.init)(_key(2), img)
  logits = jax.jit(functools.partial(disc.apply, train=False))(dv, img)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  # The head sits on the 4x4 map of the last block's width.
  assert dv["params"]["Dense_0"]["kernel"].shape == (
      4 * 4 * min(4 * 2 ** (levels - 1), 16), 1)
  encoder = siamese.Encoder(width=4, max_width=16, arch="resnet")
  feats = encoder.apply(encoder.init(_key(3), img, train=False), img,
                        train=False)
  assert feats.shape == (3, 4 * 4 * min(4 * 2 ** (levels - 1), 16))


def test_discriminator_block_known_value():
  """With the residual convolutions zeroed, an 8 px trunk (one block) is
  its shortcut: ReLU(conv1x1(avgpool2(x))), and the head a dense layer."""
  disc = dcgan.Discriminator(width=3, max_width=3, arch="resnet",
                             norm="none")
  x = jax.random.normal(_key(0), (2, 8, 8, 2))
  params = _flat(jax.jit(disc.init)(_key(1), x)["params"])
  convs = sorted({k.split("/")[0] for k in params if k.startswith("Conv")})
  assert len(convs) == 3
  shortcut = [c for c in convs if params[c + "/kernel"].shape[0] == 1]
  assert len(shortcut) == 1
  for c in convs:
    if c not in shortcut:
      params[c + "/kernel"] = jnp.zeros_like(params[c + "/kernel"])
      params[c + "/bias"] = jnp.zeros_like(params[c + "/bias"])
  logits = disc.apply(
      {"params": flax.traverse_util.unflatten_dict(params, sep="/")}, x,
      train=False)
  pooled = np.asarray(x).reshape(2, 4, 2, 4, 2, 2).mean(axis=(2, 4))
  w = np.asarray(params[shortcut[0] + "/kernel"])[0, 0]
  b = np.asarray(params[shortcut[0] + "/bias"])
  feats = np.maximum(pooled @ w + b, 0.0).reshape(2, -1)
  want = (feats @ np.asarray(params["Dense_0/kernel"])
          + np.asarray(params["Dense_0/bias"]))[:, 0]
  np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)


def test_spectral_norm_covers_every_convolution():
  disc = dcgan.Discriminator(width=4, max_width=8, arch="resnet",
                             norm="none", spectral_norm=True)
  x = jax.random.normal(_key(0), (2, 16, 16, 1))
  variables = disc.init(_key(1), x)

  @jax.jit
  def iterate(stats):  # Power iterations, one per training call.
    def body(_, stats):
      return disc.apply({**variables, "batch_stats": stats}, x,
                        mutable=["batch_stats"])[1]["batch_stats"]
    return jax.lax.fori_loop(0, 100, body, stats)

  stats = iterate(variables["batch_stats"])
  used = _flat(normalization.normalized_params(variables["params"], stats))
  kernels = [k for k in used if k.endswith("kernel")]
  assert len(kernels) == 3 * 2 + 1  # Two blocks of three convs, the head.
  for name in kernels:
    w = np.asarray(used[name])
    top = np.linalg.svd(w.reshape(-1, w.shape[-1]), compute_uv=False)[0]
    np.testing.assert_allclose(top, 1.0, rtol=1e-2, err_msg=name)


def test_unknown_arch_is_one_clear_error():
  for task, spec in ((gan.GANTask, "gan.py:tiny"),
                     (siamese_gan.SiameseGANTask, "siamese_gan.py:tiny")):
    with pytest.raises(ValueError, match="Unknown model.arch 'vgg'; valid: "
                       "dcgan, resnet"):
      task(_config(spec, **{"model.arch": "vgg"}))


def test_gan_train_step_with_spectral_norm_and_hinge():
  config = _config("gan.py:tiny,resnet", **{"model.d_norm": "none",
                                            "gan.d_spectral_norm": True,
                                            "gan.loss": "hinge"})
  task = gan.GANTask(config)
  state = task.init_state(_key(0))
  batch = task.example_batch(4)
  step = jax.jit(task.train_step)
  new, m = step(state, batch, _key(1))
  assert np.isfinite(float(m["d_loss"])) and np.isfinite(float(m["g_loss"]))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                       state.g.params, new.g.params)
  assert all(jax.tree.leaves(moved))  # Every G weight got a gradient.


def test_siamese_gan_runs_end_to_end(tmp_path):
  config = _config("siamese_gan.py:tiny,cond,ac,resnet",
                   **{"train.num_steps": 2})
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.step == 2
  assert np.isfinite(result.eval_metrics["eval/swd"])
  # The residual networks trained: plain convolutions, no DCGAN UpConvs.
  assert "Conv_0" in result.state.g.params
  assert not any(k.startswith("UpConv") for k in result.state.g.params)
  assert "Conv_0" in result.state.d.params["encoder"]
  assert (tmp_path / "samples" / "samples_0000002.png").exists()
