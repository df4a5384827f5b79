"""Siamese-discriminator GAN: shapes, the shared encoder, each loss term,
a discriminator step, the EMA generator, and a tiny run of the loop."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import configlib
from jaxgen import train
from jaxgen.models import dcgan
from jaxgen.models import siamese
from jaxgen.tasks import gan_base
from jaxgen.tasks import siamese_gan

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG2 = float(np.log(2.0))


def _config(variant="tiny", **updates):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", "siamese_gan.py") + ":" + variant)
  for path, value in updates.items():
    node = config
    *parents, leaf = path.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


def _key(seed):
  # XLA:CPU compiles threefry bit generation slowly; rbg keeps this file
  # fast (the end-to-end run at the bottom keeps the loop's default keys).
  return jax.random.key(seed, impl="rbg")


def _task(batch=4, res=16, **updates):
  task = siamese_gan.SiameseGANTask(_config(**updates))
  images = jax.random.uniform(_key(1), (batch, res, res, 3))
  state = task.init_state(_key(0), {"image": images})
  return task, state, images


def _zero_heads(params, adv_bias=0.0, sim_bias=0.0):
  """Heads that output their bias whatever the features."""
  p = jax.tree_util.tree_map(lambda x: x, params)
  p["adv_head"] = {"kernel": jnp.zeros_like(p["adv_head"]["kernel"]),
                   "bias": jnp.full_like(p["adv_head"]["bias"], adv_bias)}
  if "sim_head" in p:
    last = p["sim_head"]["Dense_1"]
    p["sim_head"]["Dense_1"] = {"kernel": jnp.zeros_like(last["kernel"]),
                                "bias": jnp.full_like(last["bias"], sim_bias)}
  return p


def test_shapes():
  disc = siamese.SiameseDiscriminator(width=8, max_width=32, sim_hidden=16)
  x = jnp.zeros((5, 32, 32, 3))
  v = jax.eval_shape(disc.init, _key(0), x)
  (feats, logits), _ = jax.eval_shape(
      lambda v, x: disc.apply(v, x, mutable=["batch_stats"]), v, x)
  assert feats.shape == (5, 4 * 4 * 32) and logits.shape == (5,)
  s = jax.eval_shape(lambda v, a, b: disc.apply(
      v, a, b, method=siamese.SiameseDiscriminator.similarity_logits),
                     v, feats, feats)
  assert s.shape == (5,) and s.dtype == jnp.float32
  gen = dcgan.Generator(res=32, channels=3, width=8, max_width=32)
  gv = jax.jit(gen.init)(_key(0), jnp.zeros((2, 100)))
  out = jax.jit(lambda v, z: gen.apply(v, z, train=False))(
      gv, 3 * jax.random.normal(_key(1), (2, 100)))
  assert out.shape == (2, 32, 32, 3)
  assert float(jnp.max(jnp.abs(out))) <= 1.0
  for norm in ("layer", "none"):
    d = siamese.SiameseDiscriminator(width=8, max_width=32, norm=norm)
    assert "batch_stats" not in jax.eval_shape(d.init, _key(0), x)


def test_similarity_is_symmetric():
  disc = siamese.SiameseDiscriminator(width=8, max_width=16, sim_hidden=8)
  v = jax.jit(disc.init)(_key(0), jnp.zeros((2, 16, 16, 3)))
  fa, fb = jax.random.normal(_key(1), (2, 6, 4 * 4 * 16))
  sim = jax.jit(lambda a, b: disc.apply(
      v, a, b, method=siamese.SiameseDiscriminator.similarity_logits))
  np.testing.assert_allclose(sim(fa, fb), sim(fb, fa), rtol=1e-6)


def test_one_encoder_and_gradients_from_both_branches():
  disc = siamese.SiameseDiscriminator(width=8, max_width=16, sim_hidden=8)
  a, b = jax.random.uniform(_key(2), (2, 4, 16, 16, 3))
  v = jax.jit(disc.init)(_key(0), a)
  assert sorted(v["params"]) == ["adv_head", "encoder", "sim_head"]
  assert sorted(v["batch_stats"]) == ["encoder"]

  def sim(params, stop_a=False, stop_b=False):
    vv = dict(v, params=params)
    (fa, _), _ = disc.apply(vv, a, mutable=["batch_stats"])
    (fb, _), _ = disc.apply(vv, b, mutable=["batch_stats"])
    fa = jax.lax.stop_gradient(fa) if stop_a else fa
    fb = jax.lax.stop_gradient(fb) if stop_b else fb
    return jnp.sum(disc.apply(
        vv, fa, fb, method=siamese.SiameseDiscriminator.similarity_logits))

  grads = jax.jit(lambda p: {
      name: jax.grad(sim)(p, **kw)["encoder"] for name, kw in
      (("both", {}), ("a", {"stop_b": True}), ("b", {"stop_a": True}))})(
          v["params"])
  flat = {k: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(g)])
          for k, g in grads.items()}
  # Each branch alone moves the one encoder, and the gradient with both
  # branches is their sum: the same weights serve both images.
  assert np.abs(flat["a"]).max() > 0 and np.abs(flat["b"]).max() > 0
  assert not np.allclose(flat["a"], flat["b"])
  np.testing.assert_allclose(flat["both"], flat["a"] + flat["b"], rtol=1e-4,
                             atol=1e-6)


def test_d_loss_gradient_reaches_encoder_from_both_heads():
  task, state, images = _task()
  real = images * 2 - 1

  def term(name):
    return lambda p: task.d_loss(p, state.d, real, -real, None)[1][0][name]

  grads = jax.jit(lambda p: (jax.grad(term("d_adv"))(p),
                             jax.grad(term("d_sim"))(p)))(state.d.params)
  for g in grads:
    assert max(float(jnp.abs(x).max()) for x in
               jax.tree_util.tree_leaves(g["encoder"])) > 0
  # The adversarial term does not train the similarity head and vice versa.
  assert not any(np.any(x) for x in jax.tree_util.tree_leaves(
      grads[0]["sim_head"]))
  assert not any(np.any(x) for x in jax.tree_util.tree_leaves(
      grads[1]["adv_head"]))


@pytest.mark.parametrize("adv_bias,sim_bias", [(0.0, 0.0), (1.5, -0.7)])
def test_losses_known_values(adv_bias, sim_bias):
  """Constant logits: every term is a softplus of the bias."""
  task, state, images = _task(**{"siamese.d_sim_weight": 0.5,
                                 "siamese.g_sim_weight": 2.0})
  sp = lambda t: float(np.log1p(np.exp(t)))
  d = state.d.replace(params=_zero_heads(state.d.params, adv_bias, sim_bias))
  real = images * 2 - 1
  loss, (m, _) = task.d_loss(d.params, d, real, jnp.zeros_like(real), None)
  d_adv = sp(-adv_bias) + sp(adv_bias)
  d_sim = sp(-sim_bias) + sp(sim_bias)
  np.testing.assert_allclose(m["d_adv"], d_adv, rtol=1e-5)
  np.testing.assert_allclose(m["d_sim"], d_sim, rtol=1e-5)
  np.testing.assert_allclose(loss, d_adv + 0.5 * d_sim, rtol=1e-5)
  if adv_bias == 0.0:
    np.testing.assert_allclose(loss, 2 * LOG2 * 1.5, rtol=1e-5)
  state = state.replace(d=d)
  loss, (m, _) = task.g_loss(state.g.params, state, real, _key(3))
  np.testing.assert_allclose(m["g_adv"], sp(-adv_bias), rtol=1e-5)
  np.testing.assert_allclose(m["g_sim"], sp(-sim_bias), rtol=1e-5)
  np.testing.assert_allclose(loss, sp(-adv_bias) + 2.0 * sp(-sim_bias),
                             rtol=1e-5)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_loss_signs(sign):
  """A discriminator that is right (sign=+1) has a small loss and its
  generator a large one; one that is wrong (sign=-1) the other way round.

  Stubs: real images are +1 and fakes -1; D's logit is 3*sign*mean(x) and
  its 1-d feature mean(x); S = 2*sign*(1 - |fa - fb|), so real-real pairs
  score +2*sign and real-fake pairs -2*sign.
  """
  task, state, _ = _task(**{"siamese.d_sim_weight": 1.0,
                            "siamese.g_sim_weight": 1.0})
  feat = lambda x: jnp.mean(x, axis=(1, 2, 3))[:, None]
  task._encode = lambda v, x, labels=None: (feat(x),
                                            3 * sign * feat(x)[:, 0], v)
  task._sim = lambda v, fa, fb: 2 * sign * (1 - jnp.abs(fa - fb))[:, 0]
  task.generator_forward = lambda g, z, train=True: (
      -jnp.ones((z.shape[0], 16, 16, 3)), g.batch_stats)
  real = jnp.ones((4, 16, 16, 3))
  sp = lambda t: float(np.log1p(np.exp(t)))
  _, (dm, _) = task.d_loss(state.d.params, state.d, real, -real, None)
  _, (gm, _) = task.g_loss(state.g.params, state, real, _key(0))
  np.testing.assert_allclose(dm["d_adv"], 2 * sp(-3 * sign), rtol=1e-5)
  np.testing.assert_allclose(dm["d_sim"], 2 * sp(-2 * sign), rtol=1e-5)
  np.testing.assert_allclose(gm["g_adv"], sp(3 * sign), rtol=1e-5)
  np.testing.assert_allclose(gm["g_sim"], sp(2 * sign), rtol=1e-5)
  assert (dm["d_loss"] < gm["g_loss"]) == (sign > 0)
  assert (dm["sim_real"] > 0.5) == (dm["sim_fake"] < 0.5) == (sign > 0)


def test_plain_is_a_dcgan_discriminator():
  task, state, images = _task(**{"siamese.d_sim_weight": 0.0,
                                 "siamese.g_sim_weight": 0.0})
  assert sorted(state.d.params) == ["adv_head", "encoder"]
  m = task.config.model
  ref = dcgan.Discriminator(width=m.d_width, max_width=m.max_width)
  params = dict(state.d.params["encoder"], Dense_0=state.d.params["adv_head"])
  v = {"params": params, "batch_stats": state.d.batch_stats["encoder"]}
  x = images * 2 - 1
  want = jax.jit(lambda v, x: ref.apply(v, x, train=False))(v, x)
  _, got = jax.jit(lambda v, x: task.disc.apply(v, x, train=False))(
      state.d.variables(), x)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  _, metrics = jax.jit(task.train_step)(state, {"image": images},
                                        _key(0))
  assert "d_sim" not in metrics and "g_sim" not in metrics


def test_repeated_d_steps_reduce_d_loss():
  task, state, images = _task(batch=8, **{"d_optim.lr": 2e-3})
  real = images * 2 - 1
  rng = _key(5)  # Fixed z: the fakes are the same every step.
  step = jax.jit(lambda s: task._d_update(s, real, rng, True))
  _, first = step(state)
  for _ in range(30):
    state, metrics = step(state)
  assert float(metrics["d_loss"]) < 0.7 * float(first["d_loss"])
  assert float(metrics["d_sim"]) < float(first["d_sim"])
  assert float(metrics["sim_real"]) > float(metrics["sim_fake"])


def test_ema_update_math():
  ema = {"w": jnp.array([1.0, 2.0]), "b": {"m": jnp.array(4.0)}}
  new = {"w": jnp.array([3.0, 0.0]), "b": {"m": jnp.array(0.0)}}
  out = gan_base.ema_update(ema, new, 0.9)
  np.testing.assert_allclose(out["w"], [1.2, 1.8], rtol=1e-6)
  np.testing.assert_allclose(out["b"]["m"], 3.6, rtol=1e-6)


def test_ema_in_train_step_and_sampling():
  task, state, images = _task(**{"gan.ema_decay": 0.9})
  assert task.ema_decay == 0.9
  ema0 = state.ema
  np.testing.assert_array_equal(
      ema0["params"]["Dense_0"]["kernel"], state.g.params["Dense_0"]["kernel"])
  new, _ = jax.jit(task.train_step)(state, {"image": images},
                                    _key(0))
  for part, live in (("params", new.g.params),
                     ("batch_stats", new.g.batch_stats)):
    want = jax.tree_util.tree_map(lambda e, p: 0.9 * e + 0.1 * p, ema0[part],
                                  live)
    for w, got in zip(jax.tree_util.tree_leaves(want),
                      jax.tree_util.tree_leaves(new.ema[part])):
      np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-7)
  sampler = gan_base.sampling_generator(new)
  assert sampler.params is new.ema["params"]
  imgs = task.generate(new, _key(1), 3)
  assert imgs.shape == (3, 16, 16, 3)
  # EMA off: no copy in the state, sampling uses the live generator.
  task, state, _ = _task()
  assert state.ema is None and gan_base.sampling_generator(state) is state.g


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_bn_recalibrate_samples_with_the_codes_own_statistics(ema):
  """gan.bn_recalibrate=n: the sampling generator's BatchNorm statistics
  are its own activations' on n codes of key 0, so eval mode on those codes
  equals train mode; 0 (and a stored config without the field) keeps the
  stored statistics."""
  # The initial averages (mean 0, variance 1) are not G's statistics.
  task, state, _ = _task(**{"gan.ema_decay": ema, "gan.bn_recalibrate": 32})
  g = gan_base.sampling_generator(state)
  z = task.sample_z(jax.random.key(0), 32)
  want, _ = task.gen.apply(g.variables(), z, train=True,
                           mutable=["batch_stats"])
  recalibrated = task.sampling_generator(state)
  assert recalibrated.params is g.params
  got = task.gen.apply(recalibrated.variables(), z, train=False)
  np.testing.assert_allclose(got, want, atol=1e-5)
  stored = task.gen.apply(g.variables(), z, train=False)
  assert np.abs(stored - want).max() > 1e-2
  np.testing.assert_allclose(
      task.generate(state, _key(3), 4),
      (task.gen.apply(recalibrated.variables(),
                      task.sample_z(_key(3), 4), train=False) + 1) / 2,
      atol=1e-5)
  off = siamese_gan.SiameseGANTask(_config(**{"gan.ema_decay": ema,
                                              "gan.bn_recalibrate": 0}))
  assert off.sampling_generator(state).batch_stats is g.batch_stats
  old = _config(**{"gan.ema_decay": ema})
  old.gan = {k: v for k, v in old.gan.items() if k != "bn_recalibrate"}
  assert siamese_gan.SiameseGANTask(old).sampling_generator(
      state).batch_stats is g.batch_stats


def test_truncation_bounds_the_sampling_codes_only():
  """gan.truncation=t: samples, generate and eval draw codes from N(0, 1)
  truncated to [-t, t] (its standard deviation known in closed form);
  training codes and the BatchNorm recalibration stay N(0, I); 0 is off."""
  t = 0.5
  task, state, _ = _task(**{"gan.ema_decay": 0.9, "gan.bn_recalibrate": 32,
                            "gan.truncation": t})
  off, _, _ = _task(**{"gan.ema_decay": 0.9, "gan.bn_recalibrate": 32})
  z = task.sampling_z(_key(5), 512)
  assert float(jnp.abs(z).max()) <= t
  # Var of N(0, 1) on [-t, t]: 1 - 2 t phi(t) / (2 Phi(t) - 1).
  phi = np.exp(-t * t / 2) / np.sqrt(2 * np.pi)
  two_cdf_minus_1 = float(jax.scipy.special.erf(t / np.sqrt(2)))
  want_std = np.sqrt(1 - 2 * t * phi / two_cdf_minus_1)
  assert float(jnp.std(z)) == pytest.approx(want_std, rel=0.03)
  np.testing.assert_array_equal(off.sampling_z(_key(5), 4),
                                off.sample_z(_key(5), 4))
  np.testing.assert_array_equal(task.sample_z(_key(5), 4),
                                off.sample_z(_key(5), 4))
  g = task.sampling_generator(state)
  for a, b in zip(jax.tree.leaves(g.variables()),
                  jax.tree.leaves(off.sampling_generator(state).variables())):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(
      task.generate(state, _key(3), 4),
      (task.gen.apply(g.variables(), task.sampling_z(_key(3), 4),
                      train=False) + 1) / 2, atol=1e-5)
  for bad in (-0.5, float("nan"), float("inf")):
    with pytest.raises(ValueError, match="gan.truncation"):
      _task(**{"gan.truncation": bad})


def test_eval_state_computes_the_sampling_generator_once():
  """eval_state: eval_step, samples and generate give the same results on
  the prepared state, whose generator is used as it is (no second
  recalibration)."""
  task, state, images = _task(**{"gan.ema_decay": 0.9,
                                 "gan.bn_recalibrate": 32})
  batch = {"image": images}
  ready = jax.jit(task.eval_state)(state)
  assert ready.sampling_ready and ready.ema is None
  assert task.sampling_generator(ready) is ready.g
  want = task.sampling_generator(state)
  for a, b in zip(jax.tree.leaves(ready.g.variables()),
                  jax.tree.leaves(want.variables())):
    np.testing.assert_allclose(a, b, atol=1e-6)
  eval_step = jax.jit(task.eval_step)
  for k, v in eval_step(state, batch, _key(1)).items():
    np.testing.assert_allclose(eval_step(ready, batch, _key(1))[k], v,
                               atol=1e-5, err_msg=k)
  np.testing.assert_allclose(task.generate(ready, _key(2), 4),
                             task.generate(state, _key(2), 4), atol=1e-5)


def test_tiny_run_end_to_end(tmp_path):
  config = _config("tiny,ema=0.5")
  config.train.update(num_steps=4)
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.step == 4
  assert {"eval/swd", "eval/sim_real", "eval/sim_fake"} <= set(
      result.eval_metrics)
  assert np.isfinite(result.train_metrics["train/g_sim"])
  assert os.path.isdir(tmp_path / "checkpoints" / "4")
  assert os.listdir(tmp_path / "best")
  assert (tmp_path / "samples" / "samples_0000004.png").exists()
  assert (tmp_path / "loss.png").exists()
  # The EMA (decay 0.5) trails the trained generator: close, not equal.
  ema = jax.tree.leaves(result.state.ema["params"])
  g = jax.tree.leaves(result.state.g.params)
  assert len(ema) == len(g)
  assert any(not np.array_equal(e, p) for e, p in zip(ema, g))
