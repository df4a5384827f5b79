"""Task steps lower their losses on a fixed batch."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import backend
from jaxgen import configlib
from jaxgen.tasks import gan as gan_task
from jaxgen.tasks import vae as vae_task

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _batch(n=8, res=16, seed=0):
  rng = np.random.default_rng(seed)
  x = np.zeros((n, res, res, 1), np.float32)
  for i in range(n):  # A bright square at a random place per image.
    a, b = rng.integers(0, res - 6, 2)
    x[i, a:a + 6, b:b + 6] = 1.0
  return {"image": jnp.asarray(x)}


def test_vae_step_lowers_loss_on_fixed_batch():
  config = configlib.load_config_file(f"{ROOT}/configs/vae.py:tiny")
  config.loss.warmup_steps = 0
  config.optim.lr = 3e-3
  task = vae_task.VAETask(config)
  batch = _batch()
  state = task.init_state(jax.random.key(0), batch)
  step = jax.jit(task.train_step)
  losses = []
  for i in range(30):
    state, m = step(state, batch, jax.random.key(i))
    losses.append(float(m["loss"]))
  assert int(state.step) == 30
  assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses


def test_vae_ink_f1_known_values():
  """Strokes in place score 1, a grey smear 0, half the ink 2/3."""
  target = np.zeros((4, 8, 8, 1), np.float32)
  target[:, 2, 1:7] = 1.0                       # A 6-pixel stroke.
  half = target.copy()
  half[:, 2, 4:7] = 0.2                          # 3 of the 6 pixels faint.
  smear = np.full_like(target, 0.3)
  f1 = vae_task.ink_f1(jnp.asarray(np.stack([target[0], half[0], smear[0],
                                              np.zeros_like(target[0])])),
                       jnp.asarray(target))
  np.testing.assert_allclose(np.asarray(f1), [1.0, 2 / 3, 0.0, 0.0],
                             atol=1e-6)
  blank = jnp.zeros((1, 8, 8, 1))
  assert float(vae_task.ink_f1(blank, blank)[0]) == 1.0


def test_gan_discriminator_updates_lower_its_loss_with_g_fixed():
  config = configlib.load_config_file(f"{ROOT}/configs/gan.py:tiny")
  config.d_optim.lr = 2e-3
  task = gan_task.GANTask(config)
  batch = _batch()
  state = task.init_state(jax.random.key(0), batch)
  real = batch["image"] * 2 - 1
  d_step = jax.jit(lambda s, r: task._d_update(s, real, r, True))  # pylint: disable=protected-access
  g_before = jax.tree.leaves(state.g.params)
  losses = []
  for _ in range(25):
    # The same noise each time: a truly fixed batch for D.
    state, m = d_step(state, jax.random.key(7))
    losses.append(float(m["d_loss"]))
  assert losses[-1] < 0.5 * losses[0], losses
  for a, b in zip(g_before, jax.tree.leaves(state.g.params)):
    np.testing.assert_array_equal(a, b)  # G untouched by D updates.


def test_gan_alternation_schedule(monkeypatch):
  """d_steps=2: G is updated on every second call only, alike whether the
  alternation branches (lax.cond) or computes and selects (CPU's choice,
  backend.select_not_cond). The critic is a WGAN-GP one without BatchNorm
  (model.d_norm=layer): it has no batch statistics, which the D step must
  not expect."""
  assert backend.select_not_cond("cpu") and not backend.select_not_cond("gpu")
  config = configlib.load_config_file(f"{ROOT}/configs/gan.py:tiny")
  config.gan.update(d_steps=2, loss="wgan", gp_weight=10.0)
  config.model.d_norm = "layer"
  task = gan_task.GANTask(config)
  batch = _batch()
  finals, all_metrics = [], []
  for select in (True, False):
    monkeypatch.setattr(backend, "select_not_cond", lambda s=select: s)
    state = task.init_state(jax.random.key(0), batch)
    assert state.d.batch_stats is None
    step = jax.jit(task.train_step)
    g_steps, d_steps, metrics = [], [], []
    for i in range(4):
      state, m = step(state, batch, jax.random.key(i))
      g_steps.append(int(state.g.step))
      d_steps.append(int(state.d.step))
      metrics.append({k: float(v) for k, v in m.items()})
      assert m["d_gp"] > 0 and np.isfinite(m["d_loss"])
    assert d_steps == [1, 2, 3, 4]
    assert g_steps == [0, 1, 1, 2]
    finals.append(jax.tree.leaves(state.g.params))
    all_metrics.append(metrics)
  for a, b in zip(*finals):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(*all_metrics):
    assert a.keys() == b.keys()
    for k in a:
      assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-5), k
