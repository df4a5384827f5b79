"""The EMA generator of every GAN family (jaxgen/tasks/gan_base.py); each
family's training step with it on: tests/test_gan_options.py."""

import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import checkpoint
from jaxgen import configlib
from jaxgen import tasks as tasks_lib
from jaxgen.tasks import gan_base

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, decay):
  config = configlib.load_config_file(
      os.path.join(ROOT, "configs", f"{name}.py:tiny"))
  config.gan.ema_decay = decay
  return config


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def test_decay_from_gan_or_older_model_field_and_bad_values():
  cfg = ml_collections.ConfigDict({"gan": {"ema_decay": 0.0},
                                   "model": {"ema_decay": 0.5}})
  assert gan_base.ema_decay(cfg) == 0.5  # An older siamese_gan config.
  cfg.gan.ema_decay = 0.9
  assert gan_base.ema_decay(cfg) == 0.9
  assert gan_base.ema_decay(ml_collections.ConfigDict({"model": {}})) == 0.0
  cfg.gan.ema_decay = 1.0
  with pytest.raises(ValueError, match=r"gan.ema_decay must be in \[0, 1\)"):
    gan_base.ema_decay(cfg)
  with pytest.raises(ValueError, match="gan.ema_decay"):
    tasks_lib.get_task(_config("gan", -0.1))


def test_recursion_over_three_steps_with_a_fake_update(monkeypatch):
  """ema_3 = d^3 ema_0 + (1 - d) (d^2 x_1 + d x_2 + x_3) through
  GANTask.train_step, whose stub updates set the generator to known values:
  params p_0 + k and BN statistics k * s_0 after call k (k = 1, 2, 3)."""
  decay = 0.8
  task = tasks_lib.get_task(_config("gan", decay))
  state = task.init_state(jax.random.key(0))
  ema0 = jax.device_get(state.ema)
  live0 = {"params": state.g.params, "batch_stats": state.g.batch_stats}
  for a, b in zip(_leaves(ema0), _leaves(live0)):
    np.testing.assert_array_equal(a, b)

  def fake_g_update(s, real, rng, apply, labels=None):
    del real, rng, apply, labels
    k = s.step.astype(jnp.float32) + 1.0
    return s.replace(g=s.g.replace(
        params=jax.tree_util.tree_map(lambda p: p + k, live0["params"]),
        batch_stats=jax.tree_util.tree_map(lambda b: b * k,
                                           live0["batch_stats"]))), {}

  monkeypatch.setattr(task, "_d_update", lambda s, *args: (s, {}))
  monkeypatch.setattr(task, "_g_update", fake_g_update)
  for i in range(3):
    state, _ = task.train_step(state, {"image": jnp.zeros((2, 16, 16, 1))},
                               jax.random.key(i))
  d = decay
  want = {"params": jax.tree_util.tree_map(
      lambda e: d**3 * e + (1 - d) * (d**2 * (e + 1) + d * (e + 2) + e + 3),
      ema0["params"]),
          "batch_stats": jax.tree_util.tree_map(
              lambda e: (d**3 + (1 - d) * (d**2 + 2 * d + 3)) * e,
              ema0["batch_stats"])}
  assert any(np.any(x != 0) for x in _leaves(want["batch_stats"]))
  for got, w in zip(_leaves(state.ema), _leaves(want)):
    np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-6)


def test_checkpoints_written_before_the_ema_field_restore(tmp_path):
  """A GAN state saved without the `ema` field (older runs of gan, cgan and
  cyclegan), or with it but before the `aux` field, restores into today's
  state with the missing fields None; a state with the EMA restores it."""

  @flax.struct.dataclass
  class OlderGANState:
    step: jax.Array
    g: dict
    d: dict

  @flax.struct.dataclass
  class EMAGANState:  # Before the `aux` field; ema None is kept on disk.
    step: jax.Array
    g: dict
    d: dict
    ema: Any = None

  arrays = {"step": jnp.array(3, jnp.int32), "g": {"w": jnp.arange(3.0)},
            "d": {"w": jnp.ones(2)}}
  config = ml_collections.ConfigDict({"task": "gan"})
  for name, state in (
      ("older", OlderGANState(**arrays)),
      ("ema_off", EMAGANState(**arrays)),
      ("ema_on", EMAGANState(**arrays, ema={"w": jnp.full(3, 7.0)})),
      ("ema", gan_base.GANState(**arrays, ema={"w": jnp.full(3, 7.0)}))):
    ckpt = checkpoint.Checkpointer(str(tmp_path / name))
    ckpt.save(3, state, {}, config)
    ckpt.wait()
    with_ema = getattr(state, "ema", None) is not None
    target = gan_base.GANState(
        **jax.tree_util.tree_map(jnp.zeros_like, arrays),
        ema={"w": jnp.zeros(3)} if with_ema else None)
    got, _, meta = ckpt.restore(target)
    ckpt.close()
    assert isinstance(got, gan_base.GANState) and meta["step"] == 3, name
    np.testing.assert_array_equal(got.g["w"], [0.0, 1.0, 2.0])
    assert int(got.step) == 3 and got.aux is None
    if with_ema:
      np.testing.assert_array_equal(got.ema["w"], [7.0] * 3)
    else:
      assert got.ema is None
